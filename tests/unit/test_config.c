#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testutil.h"

static char *dir;

static int
setup(void **state)
{
	(void)state;
	dir = test_tmpdir();
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	test_rmtree(dir);
	free(dir);
	return 0;
}

/* Loads text as a config; returns the result and the message in err. */
static int
load(const char *text, struct config **cfg, char *err, size_t len)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/c.conf", dir);
	test_write_file(path, text);
	*cfg = NULL;
	return config_load(cfg, path, err, len);
}

#define PURPOSES "purposes = ( { name = \"service\"; basis = \"opt_out\"; } );\n"

static void
test_defaults_and_paths(void **state)
{
	struct config *cfg = test_config(dir);
	char want[4200];

	(void)state;
	assert_string_equal(cfg->listen, "127.0.0.1:50051");
	snprintf(want, sizeof(want), "%s/db", dir);
	assert_string_equal(cfg->store_dir, want);
	assert_int_equal(cfg->workers, 32);
	assert_int_equal(cfg->map_size_mb, 64);
	assert_false(cfg->insecure_plaintext);
	assert_int_equal(cfg->schema.n_attrs, 3);
	assert_int_equal(cfg->schema.attrs[2].type, ATTR_INT);
	assert_int_equal(cfg->schema.attrs[2].max, 130);
	assert_int_equal(cfg->schema.n_purposes, 1);
	config_free(cfg);
}

static void
test_errors_name_the_problem(void **state)
{
	struct config *cfg;
	char err[512];

	(void)state;
	assert_int_equal(load("schema = ();\n" PURPOSES, &cfg, err, sizeof(err)),
	    VAULT_ERR_CONFIG);
	assert_non_null(strstr(err, "'schema'"));
	assert_int_equal(load("schema = ( { name = \"a\"; type = \"float\"; } );\n"
	    PURPOSES, &cfg, err, sizeof(err)), VAULT_ERR_CONFIG);
	assert_non_null(strstr(err, "needs a type"));
	assert_int_equal(load("schema = ( { name = \"a\"; type = \"int\"; },"
	    "{ name = \"a\"; type = \"int\"; } );\n" PURPOSES, &cfg, err,
	    sizeof(err)), VAULT_ERR_CONFIG);
	assert_non_null(strstr(err, "defined twice"));
	assert_int_equal(load("workers = 0;\nschema = ( { name = \"a\"; "
	    "type = \"int\"; } );\n" PURPOSES, &cfg, err, sizeof(err)),
	    VAULT_ERR_CONFIG);
	assert_non_null(strstr(err, "'workers'"));
	assert_int_equal(load("workers = \"x\";\nschema = ( { name = \"a\"; "
	    "type = \"int\"; } );\n" PURPOSES, &cfg, err, sizeof(err)),
	    VAULT_ERR_CONFIG);
	assert_non_null(strstr(err, "wrong type"));
	assert_int_equal(load("schema = ( { name = \"a\"; type = \"int\" } ",
	    &cfg, err, sizeof(err)), VAULT_ERR_CONFIG);
	assert_non_null(strstr(err, ":1"));	/* a line number */
	assert_int_equal(load("insecure_plaintext = true;\nlisten = "
	    "\"0.0.0.0:1\";\nschema = ( { name = \"a\"; type = \"int\"; } );\n"
	    PURPOSES, &cfg, err, sizeof(err)), VAULT_ERR_CONFIG);
	assert_non_null(strstr(err, "loopback"));
	assert_int_equal(load("schema = ( { name = \"a\"; type = \"int\"; } );\n"
	    "purposes = ( { name = \"x\"; basis = \"maybe\"; } );\n", &cfg, err,
	    sizeof(err)), VAULT_ERR_CONFIG);
	assert_non_null(strstr(err, "basis"));
	assert_null(cfg);
}

/* Unknown names, at the top, in a schema entry and in a purpose. */
static void
test_unknown_settings_are_errors(void **state)
{
	struct config *cfg;
	char err[512];

	(void)state;
	assert_int_equal(load("log_levl = \"debug\";\nschema = ( { name = "
	    "\"a\"; type = \"int\"; } );\n" PURPOSES, &cfg, err, sizeof(err)),
	    VAULT_ERR_CONFIG);
	assert_non_null(strstr(err, "line 1: unknown setting 'log_levl' (did "
	    "you mean 'log_level'?)"));
	assert_int_equal(load("schema = ( { name = \"a\"; type = \"int\"; "
	    "bukets = [1]; } );\n" PURPOSES, &cfg, err, sizeof(err)),
	    VAULT_ERR_CONFIG);
	assert_non_null(strstr(err, "unknown setting 'bukets' in attribute 'a' "
	    "(did you mean 'buckets'?)"));
	assert_int_equal(load("schema = ( { name = \"a\"; type = \"int\"; } );"
	    "\npurposes = ( { name = \"s\"; basis = \"opt_out\"; colour = 1; "
	    "} );\n", &cfg, err, sizeof(err)), VAULT_ERR_CONFIG);
	assert_non_null(strstr(err, "unknown setting 'colour' in purpose 's' "
	    "(known: name, basis, sale_or_share, essential, admt, attributes)"));
	assert_null(cfg);
}

/* admt = true marks a purpose of automated decisions; it cannot be essential. */
static void
test_admt_purpose(void **state)
{
	struct config *cfg;
	char err[512];

	(void)state;
	assert_int_equal(load("schema = ( { name = \"a\"; type = \"int\"; } );"
	    "\npurposes = ( { name = \"s\"; basis = \"opt_out\"; }, { name = "
	    "\"credit\"; basis = \"opt_out\"; admt = true; } );\n", &cfg, err,
	    sizeof(err)), 0);
	assert_false(cfg->schema.purposes[0].admt);
	assert_true(cfg->schema.purposes[1].admt);
	config_free(cfg);
	assert_int_equal(load("schema = ( { name = \"a\"; type = \"int\"; } );"
	    "\npurposes = ( { name = \"credit\"; basis = \"opt_out\"; admt = "
	    "true; essential = true; } );\n", &cfg, err, sizeof(err)),
	    VAULT_ERR_CONFIG);
	assert_non_null(strstr(err, "purpose 'credit': an admt purpose"));
	assert_null(cfg);
}

static void
test_missing_file_says_why(void **state)
{
	struct config *cfg;
	char err[512], path[4200];

	(void)state;
	snprintf(path, sizeof(path), "%s/nothing.conf", dir);
	assert_int_equal(config_load(&cfg, path, err, sizeof(err)),
	    VAULT_ERR_CONFIG);
	assert_non_null(strstr(err, "cannot read the file: No such file or "
	    "directory"));
	assert_int_equal(config_load(&cfg, dir, err, sizeof(err)),
	    VAULT_ERR_CONFIG);
	assert_non_null(strstr(err, "not a regular file"));
}

/* A choice setting: the first value is the default, others are refused. */
static void
test_audit_broken_is_a_choice(void **state)
{
	static const char *bad[] = { "ignore", "", "refuse|not_serving", "refus",
	    "not_serving|" };
	struct config *cfg = test_config(dir);
	char err[512], text[512];

	(void)state;
	assert_string_equal(cfg->audit_broken, "refuse");
	config_free(cfg);
	assert_int_equal(load("audit_broken = \"not_serving\";\nschema = ( { "
	    "name = \"a\"; type = \"int\"; } );\n" PURPOSES, &cfg, err,
	    sizeof(err)), 0);
	assert_string_equal(cfg->audit_broken, "not_serving");
	config_free(cfg);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "audit_broken = \"%s\";\nschema = ( "
		    "{ name = \"a\"; type = \"int\"; } );\n" PURPOSES, bad[i]);
		assert_int_equal(load(text, &cfg, err, sizeof(err)),
		    VAULT_ERR_CONFIG);
		assert_non_null(strstr(err, "'audit_broken'"));
		assert_null(cfg);
	}
}

static void
test_loopback(void **state)
{
	(void)state;
	assert_true(config_listen_is_loopback("127.0.0.1:50051"));
	assert_true(config_listen_is_loopback("127.8.9.10:1"));
	assert_true(config_listen_is_loopback("localhost:1"));
	assert_true(config_listen_is_loopback("[::1]:1"));
	assert_false(config_listen_is_loopback("0.0.0.0:1"));
	assert_false(config_listen_is_loopback("[::]:1"));
	assert_false(config_listen_is_loopback("10.0.0.1:1"));
	assert_false(config_listen_is_loopback("example.com:1"));
	assert_false(config_listen_is_loopback("127.0.0.1"));
}

/* key_provider: "file" by default; "pkcs11" needs its three settings. */
static void
test_key_provider(void **state)
{
	struct config *cfg;
	char err[512], want[4200];
	const char *schema = "schema = ( { name = \"a\"; type = \"int\"; } );\n"
	    PURPOSES;
	char text[2048];

	(void)state;
	assert_int_equal(load(schema, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg->key_provider, "file");
	assert_null(cfg->pkcs11_module);
	config_free(cfg);
	snprintf(text, sizeof(text), "key_provider = \"pkcs11\";\n"
	    "pkcs11_module = \"/usr/lib/softhsm/libsofthsm2.so\";\n"
	    "pkcs11_token_label = \"vault\";\npkcs11_pin_file = \"pin\";\n%s",
	    schema);
	assert_int_equal(load(text, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg->key_provider, "pkcs11");
	assert_string_equal(cfg->pkcs11_token_label, "vault");
	snprintf(want, sizeof(want), "%s/pin", dir);
	assert_string_equal(cfg->pkcs11_pin_file, want);
	config_free(cfg);
	snprintf(text, sizeof(text), "key_provider = \"pkcs11\";\n"
	    "pkcs11_token_label = \"vault\";\n%s", schema);
	assert_int_equal(load(text, &cfg, err, sizeof(err)), VAULT_ERR_CONFIG);
	assert_non_null(strstr(err, "needs pkcs11_module, pkcs11_token_label "
	    "and pkcs11_pin_file"));
	snprintf(text, sizeof(text), "pkcs11_token_label = \"vault\";\n%s",
	    schema);
	assert_int_equal(load(text, &cfg, err, sizeof(err)), VAULT_ERR_CONFIG);
	assert_non_null(strstr(err, "apply only with key_provider"));
	snprintf(text, sizeof(text), "key_provider = \"hsm\";\n%s", schema);
	assert_int_equal(load(text, &cfg, err, sizeof(err)), VAULT_ERR_CONFIG);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_and_paths),
		cmocka_unit_test(test_errors_name_the_problem),
		cmocka_unit_test(test_unknown_settings_are_errors),
		cmocka_unit_test(test_admt_purpose),
		cmocka_unit_test(test_missing_file_says_why),
		cmocka_unit_test(test_audit_broken_is_a_choice),
		cmocka_unit_test(test_loopback),
		cmocka_unit_test(test_key_provider),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
