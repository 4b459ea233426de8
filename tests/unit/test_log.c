/*
 * The logger: text lines keep their format and quote field values; JSON
 * lines are one object each (time, level, func, message, fields) however
 * hostile the message (quotes, newlines, bytes that are not UTF-8); the
 * level filters both.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "util/log.h"

static char captured[8192];

/* Runs fn with stderr sent to a file; its text lands in captured. */
static void
capture(void (*fn)(void))
{
	FILE *tmp = tmpfile();
	int saved = dup(STDERR_FILENO);
	size_t n;

	assert_non_null(tmp);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fileno(tmp), STDERR_FILENO), STDERR_FILENO);
	fn();
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	rewind(tmp);
	n = fread(captured, 1, sizeof(captured) - 1, tmp);
	captured[n] = '\0';
	fclose(tmp);
}

static void
log_some(void)
{
	struct log_field f[3] = {
		LOG_FIELD_STR("method", "/vault.v1.Consumers/PutAttributes"),
		LOG_FIELD_STR("error", "say \"hi\" there"),
		LOG_FIELD_INT("n", 42),
	};

	log_info("plain %d", 7);
	log_fields(LOG_LEVEL_WARN, "call", f, 3, "with fields");
	log_debug("filtered out at info");
	log_error("line one\nline two \x01 \xff\xfe end");
}

static void
log_hostile_field(void)
{
	struct log_field f[1] = {
		LOG_FIELD_STR("peer", "x\n2026-12-02T00:00:00.000Z vaultd info "
		    "forged: hello\r\x1b[2J"),
	};

	log_fields(LOG_LEVEL_WARN, "grpc", f, 1, "handshake");
}

/* An outside value in a field stays on its line, its controls escaped. */
static void
test_text_field_cannot_start_a_line(void **state)
{
	(void)state;
	log_set_level(LOG_LEVEL_INFO);
	log_set_format(LOG_FORMAT_TEXT);
	capture(log_hostile_field);
	assert_non_null(strstr(captured, " peer=\"x\\n2026-12-02T00:00:00.000Z "
	    "vaultd info forged: hello\\x0d\\x1b[2J\"\n"));
	assert_ptr_equal(strchr(captured, '\n'), captured + strlen(captured) - 1);
	assert_null(strchr(captured, '\r'));
	assert_null(strchr(captured, 0x1b));
}

static void
test_text_format(void **state)
{
	(void)state;
	log_set_level(LOG_LEVEL_INFO);
	log_set_format(LOG_FORMAT_TEXT);
	capture(log_some);
	assert_non_null(strstr(captured, "Z vaultd info log_some: plain 7\n"));
	assert_non_null(strstr(captured, "Z vaultd warn call: with fields "
	    "method=/vault.v1.Consumers/PutAttributes error=\"say \\\"hi\\\" "
	    "there\" n=42\n"));
	assert_null(strstr(captured, "filtered out"));
	assert_non_null(strstr(captured, " vaultd error log_some: line one"));
}

static void
test_json_format(void **state)
{
	int lines = 0;
	char *save = NULL;

	(void)state;
	log_set_level(LOG_LEVEL_INFO);
	log_set_format(LOG_FORMAT_JSON);
	capture(log_some);
	log_set_format(LOG_FORMAT_TEXT);
	for (char *line = strtok_r(captured, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		json_error_t err;
		json_t *o = json_loads(line, 0, &err), *fields;

		assert_non_null(o);
		assert_true(json_is_string(json_object_get(o, "time")));
		assert_true(json_is_string(json_object_get(o, "level")));
		assert_true(json_is_string(json_object_get(o, "func")));
		assert_true(json_is_string(json_object_get(o, "message")));
		assert_true(json_is_object(fields = json_object_get(o, "fields")));
		if (lines == 1) {
			assert_string_equal(json_string_value(json_object_get(o,
			    "level")), "warn");
			assert_string_equal(json_string_value(json_object_get(
			    fields, "error")), "say \"hi\" there");
			assert_int_equal(json_integer_value(json_object_get(
			    fields, "n")), 42);
		}
		if (lines == 2)	/* the newline stayed inside the string */
			assert_non_null(strstr(json_string_value(json_object_get(o,
			    "message")), "line one\nline two"));
		json_decref(o);
		lines++;
	}
	assert_int_equal(lines, 3);
}

static void
test_parse(void **state)
{
	(void)state;
	assert_int_equal(log_format_parse("text"), LOG_FORMAT_TEXT);
	assert_int_equal(log_format_parse("json"), LOG_FORMAT_JSON);
	assert_int_equal(log_format_parse("yaml"), -1);
	assert_true(log_enabled(LOG_LEVEL_ERROR));
	log_set_level(LOG_LEVEL_WARN);
	assert_false(log_enabled(LOG_LEVEL_INFO));
	log_set_level(LOG_LEVEL_INFO);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_format),
		cmocka_unit_test(test_text_field_cannot_start_a_line),
		cmocka_unit_test(test_json_format),
		cmocka_unit_test(test_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
