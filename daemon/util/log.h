/*
 * Logging to stderr. Messages must never carry a consumer id, an attribute
 * value, a token or key material: log consumer refs (hex) instead.
 *
 * Two formats (log_format): "text", one line of
 *   2026-01-02T03:04:05.678Z vaultd LEVEL FUNC: MESSAGE [key=value ...]
 * and "json", one object a line:
 *   {"time": "...", "level": "...", "func": "...", "message": "...",
 *    "fields": {...}}
 * Each line is one write(2), so lines of different threads never mix.
 */
#ifndef VAULT_LOG_H
#define VAULT_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

void log_set_level(enum log_level level);
/* Parses "error", "warn", "info" or "debug"; -1 when unknown. */
int log_level_parse(const char *name);
void log_set_format(enum log_format format);
/* Parses "text" or "json"; -1 when unknown. */
int log_format_parse(const char *name);
/* True when a line of level would be written: skip building costly fields. */
bool log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *func, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A structured field of a log line; key is a static name. */
struct log_field {
	const char *key;
	enum { LOG_STR, LOG_INT, LOG_REAL } type;
	const char *str;
	int64_t i;
	double real;
};

#define LOG_FIELD_STR(k, v) ((struct log_field){ .key = (k), .type = LOG_STR, .str = (v) })
#define LOG_FIELD_INT(k, v) ((struct log_field){ .key = (k), .type = LOG_INT, .i = (v) })
#define LOG_FIELD_REAL(k, v) ((struct log_field){ .key = (k), .type = LOG_REAL, .real = (v) })

/* A line with fields (n of them); func names where it comes from. */
void log_fields(enum log_level level, const char *func,
    const struct log_field *fields, size_t n, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __func__, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __func__, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __func__, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __func__, __VA_ARGS__)

#endif
