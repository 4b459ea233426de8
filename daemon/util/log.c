#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "util/log.h"

#define LINE_MAX_BYTES 1024

static volatile int log_threshold = LOG_LEVEL_INFO;
static volatile int log_format = LOG_FORMAT_TEXT;

static const char *const level_names[] = { "error", "warn", "info", "debug" };
static const char *const format_names[] = { "text", "json" };

void
log_set_level(enum log_level level)
{
	log_threshold = level;
}

int
log_level_parse(const char *name)
{
	for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
		if (strcmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

void
log_set_format(enum log_format format)
{
	log_format = format;
}

int
log_format_parse(const char *name)
{
	for (int i = 0; i < (int)(sizeof(format_names) / sizeof(format_names[0])); i++)
		if (strcmp(name, format_names[i]) == 0)
			return i;
	return -1;
}

bool
log_enabled(enum log_level level)
{
	return (int)level <= log_threshold;
}

static void
stamp_now(char *out, size_t len)
{
	struct timespec ts;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, len - n, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
}

/* Writes line and a newline in one write(2). */
static void
emit(char *line, size_t n, size_t cap)
{
	if (n >= cap - 1)
		n = cap - 2;
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, n);
}

static bool
has_control(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/*
 * key=value, the value quoted when it holds a space, quote, control
 * character or is empty. Control characters are escaped (\n, \xNN): a
 * value may come from outside (a peer's message), and a newline in it
 * would start a line of its own that reads like the daemon's.
 */
static size_t
text_field(char *out, size_t cap, const struct log_field *f)
{
	int n;

	switch (f->type) {
	case LOG_INT:
		n = snprintf(out, cap, " %s=%lld", f->key, (long long)f->i);
		break;
	case LOG_REAL:
		n = snprintf(out, cap, " %s=%.3f", f->key, f->real);
		break;
	default: {
		const char *s = f->str != NULL ? f->str : "";
		bool quote = s[0] == '\0' || strpbrk(s, " \"=") != NULL ||
		    has_control(s);
		size_t at;

		n = snprintf(out, cap, " %s=%s", f->key, quote ? "\"" : "");
		if (n < 0 || (size_t)n >= cap)
			return cap;
		at = (size_t)n;
		for (; *s != '\0' && at + 5 < cap; s++) {
			unsigned char ch = (unsigned char)*s;

			if (ch == '\n') {
				memcpy(out + at, "\\n", 2);
				at += 2;
				continue;
			}
			if (ch < 0x20 || ch == 0x7f) {
				at += (size_t)snprintf(out + at, cap - at,
				    "\\x%02x", ch);
				continue;
			}
			if (ch == '"' || ch == '\\')
				out[at++] = '\\';
			out[at++] = (char)ch;
		}
		if (quote && at + 1 < cap)
			out[at++] = '"';
		out[at < cap ? at : cap - 1] = '\0';
		return at;
	}
	}
	return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap;
}

static void
write_text(enum log_level level, const char *func, const char *msg,
    const struct log_field *fields, size_t nf)
{
	char line[LINE_MAX_BYTES], stamp[40];
	size_t n;
	int k;

	stamp_now(stamp, sizeof(stamp));
	k = snprintf(line, sizeof(line), "%s vaultd %s %s: %s", stamp,
	    level_names[level], func, msg);
	n = k < 0 ? 0 : (size_t)k < sizeof(line) ? (size_t)k : sizeof(line) - 1;
	for (size_t i = 0; i < nf && n < sizeof(line) - 1; i++)
		n += text_field(line + n, sizeof(line) - n, &fields[i]);
	emit(line, n < sizeof(line) ? n : sizeof(line) - 1, sizeof(line));
}

/* s as a JSON string; bytes that are not valid UTF-8 become '?'. */
static json_t *
utf8_string(const char *s)
{
	json_t *j = json_string(s);
	char *copy;

	if (j != NULL || (copy = strdup(s)) == NULL)
		return j;
	for (char *p = copy; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(copy);
	free(copy);
	return j;
}

/*
 * One JSON object, jansson escaping the strings.
 */
static void
write_json(enum log_level level, const char *func, const char *msg,
    const struct log_field *fields, size_t nf)
{
	char stamp[40], *line = NULL;
	json_t *o = json_object(), *fo = json_object();
	size_t n;

	if (o == NULL || fo == NULL)
		goto out;
	stamp_now(stamp, sizeof(stamp));
	json_object_set_new(o, "time", json_string(stamp));
	json_object_set_new(o, "level", json_string(level_names[level]));
	json_object_set_new(o, "func", utf8_string(func));
	json_object_set_new(o, "message", utf8_string(msg));
	for (size_t i = 0; i < nf; i++) {
		const struct log_field *f = &fields[i];
		json_t *v = f->type == LOG_INT ? json_integer((json_int_t)f->i) :
		    f->type == LOG_REAL ? json_real(f->real) :
		    utf8_string(f->str != NULL ? f->str : "");

		json_object_set_new(fo, f->key, v != NULL ? v : json_null());
	}
	json_object_set(o, "fields", fo);
	if ((line = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9))) == NULL)
		goto out;
	n = strlen(line);
	/* Room for the newline: one write keeps the line whole. */
	if ((line = realloc(line, n + 2)) != NULL)
		emit(line, n, n + 2);
out:
	free(line);
	json_decref(fo);
	json_decref(o);
}

static void
vlog(enum log_level level, const char *func, const struct log_field *fields,
    size_t nf, const char *fmt, va_list ap)
{
	char msg[LINE_MAX_BYTES];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (log_format == LOG_FORMAT_JSON)
		write_json(level, func, msg, fields, nf);
	else
		write_text(level, func, msg, fields, nf);
}

void
log_msg(enum log_level level, const char *func, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vlog(level, func, NULL, 0, fmt, ap);
	va_end(ap);
}

void
log_fields(enum log_level level, const char *func,
    const struct log_field *fields, size_t n, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vlog(level, func, fields, n, fmt, ap);
	va_end(ap);
}
