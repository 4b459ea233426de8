/*
 * The PKCS#11 key provider against a real SoftHSM2 token, initialised per
 * test in its own directory (SOFTHSM2_CONF).
 */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sodium.h>

#include "crypto/keyprov.h"
#include "testutil.h"

/* Last: in its standard naming it #defines common words (value, count). */
#include <p11-kit/pkcs11.h>

#define SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"

struct fx {
	char *dir;
	char pin[2048];
	struct keyprov_pkcs11_conf conf;
	struct keyprov *p;
	uint8_t *a, *b;
};

static void
write_secret(const char *path, const char *text, mode_t mode)
{
	test_write_file(path, text);
	assert_int_equal(chmod(path, mode), 0);
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char path[2048], cmd[4200];

	assert_int_equal(crypto_init(), 0);
	f->dir = test_tmpdir();
	snprintf(path, sizeof(path), "%s/tokens", f->dir);
	mkdir(path, 0700);
	snprintf(cmd, sizeof(cmd), "directories.tokendir = %s\n"
	    "objectstore.backend = file\nlog.level = ERROR\n", path);
	snprintf(path, sizeof(path), "%s/softhsm2.conf", f->dir);
	test_write_file(path, cmd);
	setenv("SOFTHSM2_CONF", path, 1);
	snprintf(cmd, sizeof(cmd), "softhsm2-util --init-token --free --label "
	    "vaulttest --pin 1234 --so-pin 5678 >/dev/null");
	assert_int_equal(system(cmd), 0);
	snprintf(f->pin, sizeof(f->pin), "%s/pin", f->dir);
	write_secret(f->pin, "1234\n", 0600);
	f->conf = (struct keyprov_pkcs11_conf){ SOFTHSM_MODULE, "vaulttest",
	    f->pin };
	f->a = crypto_secret_alloc(CRYPTO_KEY_BYTES);
	f->b = crypto_secret_alloc(CRYPTO_KEY_BYTES);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	keyprov_free(f->p);
	crypto_secret_free(f->a);
	crypto_secret_free(f->b);
	test_rmtree(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static void
open_ok(struct fx *f)
{
	char err[512] = "";

	if (keyprov_pkcs11_open(&f->p, &f->conf, err, sizeof(err)) != 0)
		fail_msg("keyprov_pkcs11_open: %s", err);
}

static bool
has_version(struct keyprov *p, uint32_t v)
{
	uint32_t *vs = NULL;
	size_t n;
	bool found = false;

	assert_int_equal(keyprov_versions(p, &vs, &n), 0);
	for (size_t i = 0; i < n; i++)
		found |= vs[i] == v;
	free(vs);
	return found;
}

static void
test_create_and_derive(void **state)
{
	struct fx *f = *state;

	open_ok(f);
	assert_string_equal(keyprov_name(f->p), "pkcs11");
	assert_int_equal(keyprov_load(f->p, 1, f->a), VAULT_ERR_NOT_FOUND);
	assert_int_equal(keyprov_create(f->p, 1), 0);
	assert_true(has_version(f->p, 1));
	assert_false(has_version(f->p, 2));
	assert_int_equal(keyprov_load(f->p, 1, f->a), 0);
	assert_int_equal(keyprov_load(f->p, 1, f->b), 0);
	assert_memory_equal(f->a, f->b, CRYPTO_KEY_BYTES);
	/* Never created twice: a second object would shadow the first. */
	assert_int_equal(keyprov_create(f->p, 1), VAULT_ERR_EXISTS);
	assert_int_equal(keyprov_create(f->p, 2), 0);
	assert_int_equal(keyprov_load(f->p, 2, f->b), 0);
	assert_memory_not_equal(f->a, f->b, CRYPTO_KEY_BYTES);
	/* The same key after a new login: it lives on the token. */
	keyprov_free(f->p);
	f->p = NULL;
	open_ok(f);
	assert_int_equal(keyprov_load(f->p, 1, f->b), 0);
	assert_memory_equal(f->a, f->b, CRYPTO_KEY_BYTES);
}

static void
test_destroy(void **state)
{
	struct fx *f = *state;

	open_ok(f);
	assert_int_equal(keyprov_create(f->p, 1), 0);
	assert_int_equal(keyprov_create(f->p, 2), 0);
	assert_int_equal(keyprov_load(f->p, 2, f->a), 0);
	assert_int_equal(keyprov_destroy(f->p, 1), 0);
	memset(f->b, 0xaa, CRYPTO_KEY_BYTES);
	assert_int_equal(keyprov_load(f->p, 1, f->b), VAULT_ERR_NOT_FOUND);
	assert_true(sodium_is_zero(f->b, CRYPTO_KEY_BYTES));	/* wiped */
	assert_false(has_version(f->p, 1));
	/* Finishing an interrupted destruction: nothing left to do. */
	assert_int_equal(keyprov_destroy(f->p, 1), 0);
	/* Not after a new login either; version 2 untouched. */
	keyprov_free(f->p);
	f->p = NULL;
	open_ok(f);
	assert_int_equal(keyprov_load(f->p, 1, f->b), VAULT_ERR_NOT_FOUND);
	assert_int_equal(keyprov_load(f->p, 2, f->b), 0);
	assert_memory_equal(f->a, f->b, CRYPTO_KEY_BYTES);
}

static void
expect_refused(struct fx *f, int want, const char *msg)
{
	char err[512] = "";

	assert_int_equal(keyprov_pkcs11_open(&f->p, &f->conf, err,
	    sizeof(err)), want);
	assert_null(f->p);
	if (strstr(err, msg) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", err, msg);
	assert_null(strstr(err, "9999"));	/* never the PIN */
}

static void
test_open_refused(void **state)
{
	struct fx *f = *state;

	write_secret(f->pin, "9999\n", 0600);
	expect_refused(f, VAULT_ERR_KEY, "C_Login: CKR_PIN_INCORRECT");
	write_secret(f->pin, "1234", 0644);
	expect_refused(f, VAULT_ERR_KEY, "must be 0600 or stricter");
	write_secret(f->pin, "", 0600);
	expect_refused(f, VAULT_ERR_KEY, "must hold a PIN");
	{
		char longpin[301], link[2100];

		memset(longpin, '7', 300);
		longpin[300] = '\0';
		write_secret(f->pin, longpin, 0600);
		expect_refused(f, VAULT_ERR_KEY, "must hold a PIN of 1 to 254 bytes");
		/* Never through a symbolic link (O_NOFOLLOW). */
		write_secret(f->pin, "1234", 0600);
		snprintf(link, sizeof(link), "%s.link", f->pin);
		assert_int_equal(symlink(f->pin, link), 0);
		f->conf.pin_file = link;
		expect_refused(f, VAULT_ERR_KEY, "cannot open PKCS#11 PIN file");
		f->conf.pin_file = f->pin;
	}
	write_secret(f->pin, "1234", 0600);
	f->conf.token_label = "other";
	expect_refused(f, VAULT_ERR_CONFIG, "no PKCS#11 token labelled \"other\"");
	f->conf.token_label = "vaulttest";
	f->conf.module = "/nonexistent/libpkcs11.so";
	expect_refused(f, VAULT_ERR_CONFIG, "cannot load PKCS#11 module");
	f->conf.module = SOFTHSM_MODULE;
	open_ok(f);
}

/* The test's own session on the module the provider loaded. */
static CK_FUNCTION_LIST_PTR
raw_functions(void)
{
	void *dl = dlopen(SOFTHSM_MODULE, RTLD_NOW | RTLD_NOLOAD);
	CK_C_GetFunctionList get;
	CK_FUNCTION_LIST_PTR fl = NULL;

	assert_non_null(dl);
	get = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
	assert_non_null(get);
	assert_int_equal(get(&fl), CKR_OK);
	dlclose(dl);	/* the provider still holds it */
	return fl;
}

static CK_OBJECT_HANDLE
raw_find(CK_FUNCTION_LIST_PTR fl, CK_SESSION_HANDLE s, const char *label)
{
	CK_ATTRIBUTE t = { CKA_LABEL, (void *)label, strlen(label) };
	CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
	CK_ULONG n = 0;

	assert_int_equal(fl->C_FindObjectsInit(s, &t, 1), CKR_OK);
	assert_int_equal(fl->C_FindObjects(s, &h, 1, &n), CKR_OK);
	assert_int_equal(fl->C_FindObjectsFinal(s), CKR_OK);
	assert_int_equal(n, 1);
	return h;
}

static CK_SESSION_HANDLE
raw_session(CK_FUNCTION_LIST_PTR fl)
{
	CK_SLOT_ID slots[8];
	CK_ULONG n = 8;
	CK_SESSION_HANDLE s;

	assert_int_equal(fl->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;

		assert_int_equal(fl->C_GetTokenInfo(slots[i], &ti), CKR_OK);
		if (memcmp(ti.label, "vaulttest ", 10) == 0) {
			/* Logged in already: the login belongs to the process. */
			assert_int_equal(fl->C_OpenSession(slots[i],
			    CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s),
			    CKR_OK);
			return s;
		}
	}
	fail_msg("no vaulttest token");
	return 0;
}

static void
test_object_attributes(void **state)
{
	struct fx *f = *state;
	CK_FUNCTION_LIST_PTR fl;
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE h;
	CK_BBOOL extractable = CK_TRUE, sensitive = CK_FALSE, token = CK_FALSE;
	uint8_t value[64];
	CK_ATTRIBUTE flags[] = {
		{ CKA_EXTRACTABLE, &extractable, sizeof(extractable) },
		{ CKA_SENSITIVE, &sensitive, sizeof(sensitive) },
		{ CKA_TOKEN, &token, sizeof(token) },
	};
	CK_ATTRIBUTE val = { CKA_VALUE, value, sizeof(value) };

	open_ok(f);
	assert_int_equal(keyprov_create(f->p, 7), 0);
	fl = raw_functions();
	s = raw_session(fl);
	h = raw_find(fl, s, "vaultd-master-7");
	assert_int_equal(fl->C_GetAttributeValue(s, h, flags, 3), CKR_OK);
	assert_false(extractable);
	assert_true(sensitive);
	assert_true(token);
	assert_int_equal(fl->C_GetAttributeValue(s, h, &val, 1),
	    CKR_ATTRIBUTE_SENSITIVE);
	assert_int_equal(val.ulValueLen, CK_UNAVAILABLE_INFORMATION);
	assert_int_equal(fl->C_CloseSession(s), CKR_OK);
}

/*
 * Known answer: a token key of known value (imported by the test, as no
 * vaultd-made key can be read) derives HMAC-SHA256(key, "vaultd master key
 * v1|<version>").
 */
static void
test_derivation_known_answer(void **state)
{
	struct fx *f = *state;
	CK_FUNCTION_LIST_PTR fl;
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE h;
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_GENERIC_SECRET;
	CK_BBOOL yes = CK_TRUE;
	uint8_t key[32], want[32];
	const char *label = "vaultd-master-5", *msg = "vaultd master key v1|5";
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &type, sizeof(type) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_VALUE, key, sizeof(key) },
		{ CKA_LABEL, (void *)label, strlen(label) },
	};

	for (int i = 0; i < 32; i++)
		key[i] = (uint8_t)i;
	crypto_auth_hmacsha256(want, (const uint8_t *)msg, strlen(msg), key);
	open_ok(f);
	fl = raw_functions();
	s = raw_session(fl);
	assert_int_equal(fl->C_CreateObject(s, tmpl, 6, &h), CKR_OK);
	assert_int_equal(fl->C_CloseSession(s), CKR_OK);
	assert_int_equal(keyprov_load(f->p, 5, f->a), 0);
	assert_memory_equal(f->a, want, 32);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_and_derive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_destroy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_object_attributes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_derivation_known_answer, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
