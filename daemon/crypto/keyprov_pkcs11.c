/*
 * The PKCS#11 key provider (keyprov.h): master key versions as
 * non-extractable secret keys on a token, working keys derived inside it.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "crypto/crypto.h"
#include "crypto/keyprov.h"
#include "util/log.h"

/* Last: in its standard naming it #defines common words (value, count). */
#include <p11-kit/pkcs11.h>

#define LABEL_PREFIX "vaultd-master-"
/* The message the token key signs: a version's working key. */
#define DERIVE_PREFIX "vaultd master key v1|"
#define PIN_MAX 256
/* PKCS#11 token labels are 32 bytes, padded with blanks. */
#define TOKEN_LABEL_BYTES 32

struct keyprov {
	void *dl;
	CK_FUNCTION_LIST_PTR f;
	bool initialized;		/* we called C_Initialize: C_Finalize at free */
	CK_SESSION_HANDLE session;
	bool have_session;
	pthread_mutex_t mu;		/* one session: calls take turns */
};

static const struct { CK_RV rv; const char *name; } rv_names[] = {
#define RV(x) { x, #x }
	RV(CKR_OK), RV(CKR_CANCEL), RV(CKR_HOST_MEMORY), RV(CKR_SLOT_ID_INVALID),
	RV(CKR_GENERAL_ERROR), RV(CKR_FUNCTION_FAILED), RV(CKR_ARGUMENTS_BAD),
	RV(CKR_ATTRIBUTE_READ_ONLY), RV(CKR_ATTRIBUTE_SENSITIVE),
	RV(CKR_ATTRIBUTE_TYPE_INVALID), RV(CKR_ATTRIBUTE_VALUE_INVALID),
	RV(CKR_DATA_INVALID), RV(CKR_DATA_LEN_RANGE), RV(CKR_DEVICE_ERROR),
	RV(CKR_DEVICE_MEMORY), RV(CKR_DEVICE_REMOVED),
	RV(CKR_FUNCTION_NOT_SUPPORTED), RV(CKR_KEY_HANDLE_INVALID),
	RV(CKR_KEY_TYPE_INCONSISTENT), RV(CKR_KEY_FUNCTION_NOT_PERMITTED),
	RV(CKR_MECHANISM_INVALID), RV(CKR_MECHANISM_PARAM_INVALID),
	RV(CKR_OBJECT_HANDLE_INVALID), RV(CKR_OPERATION_ACTIVE),
	RV(CKR_OPERATION_NOT_INITIALIZED), RV(CKR_PIN_INCORRECT),
	RV(CKR_PIN_INVALID), RV(CKR_PIN_LEN_RANGE), RV(CKR_PIN_EXPIRED),
	RV(CKR_PIN_LOCKED), RV(CKR_SESSION_CLOSED), RV(CKR_SESSION_COUNT),
	RV(CKR_SESSION_HANDLE_INVALID), RV(CKR_SESSION_READ_ONLY),
	RV(CKR_TEMPLATE_INCOMPLETE), RV(CKR_TEMPLATE_INCONSISTENT),
	RV(CKR_TOKEN_NOT_PRESENT), RV(CKR_TOKEN_NOT_RECOGNIZED),
	RV(CKR_TOKEN_WRITE_PROTECTED), RV(CKR_USER_ALREADY_LOGGED_IN),
	RV(CKR_USER_NOT_LOGGED_IN), RV(CKR_USER_PIN_NOT_INITIALIZED),
	RV(CKR_USER_TYPE_INVALID), RV(CKR_BUFFER_TOO_SMALL),
	RV(CKR_CRYPTOKI_NOT_INITIALIZED), RV(CKR_CRYPTOKI_ALREADY_INITIALIZED),
	RV(CKR_ACTION_PROHIBITED),
#undef RV
};

/* The CKR_ name of rv; a static string, or buf for an unknown value. */
static const char *
rv_name(CK_RV rv, char *buf, size_t len)
{
	for (size_t i = 0; i < sizeof(rv_names) / sizeof(rv_names[0]); i++)
		if (rv_names[i].rv == rv)
			return rv_names[i].name;
	snprintf(buf, len, "CKR_0x%08lx", (unsigned long)rv);
	return buf;
}

/* Logs "<call>: CKR_..." and returns err. */
static int
p11_fail(const char *call, CK_RV rv, int err)
{
	char buf[32];

	log_error("PKCS#11 %s: %s", call, rv_name(rv, buf, sizeof(buf)));
	return err;
}

static int
open_fail(char *err, size_t errlen, int code, const char *call, CK_RV rv)
{
	char buf[32];

	return vault_errorf(err, errlen, code, "%s: %s", call,
	    rv_name(rv, buf, sizeof(buf)));
}

/*
 * Reads the PIN file into pin (PIN_MAX bytes, locked): the same checks as
 * a key file (keyring_read_secret_file), any length from 1 to PIN_MAX,
 * one trailing newline dropped.
 */
static int
read_pin(const char *path, char *pin, size_t *len, char *err, size_t errlen)
{
	struct stat sb;
	ssize_t n;
	int fd, r = VAULT_ERR_KEY;
	char extra;

	*len = 0;
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return vault_errorf(err, errlen, VAULT_ERR_KEY,
		    "cannot open PKCS#11 PIN file %s: %s", path, strerror(errno));
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		vault_errorf(err, errlen, r, "PKCS#11 PIN file %s is not a "
		    "regular file", path);
		goto out;
	}
	if ((sb.st_mode & 077) != 0) {
		vault_errorf(err, errlen, r, "PKCS#11 PIN file %s has mode "
		    "%03o; it must be 0600 or stricter", path,
		    (unsigned)(sb.st_mode & 0777));
		goto out;
	}
	if (sb.st_uid != geteuid()) {
		vault_errorf(err, errlen, r, "PKCS#11 PIN file %s is not owned "
		    "by the daemon's user", path);
		goto out;
	}
	n = read(fd, pin, PIN_MAX);
	if (n > 0 && pin[n - 1] == '\n')
		n--;
	if (n > 0 && pin[n - 1] == '\r')
		n--;
	if (n <= 0 || n > PIN_MAX - 2 || read(fd, &extra, 1) != 0) {
		sodium_memzero(pin, PIN_MAX);
		vault_errorf(err, errlen, r, "PKCS#11 PIN file %s must hold a "
		    "PIN of 1 to %d bytes", path, PIN_MAX - 2);
		goto out;
	}
	*len = (size_t)n;
	r = 0;
out:
	close(fd);
	return r;
}

/* The slot whose token is labelled label (blank-padded to 32 bytes). */
static int
find_slot(struct keyprov *p, const char *label, CK_SLOT_ID *slot,
    char *err, size_t errlen)
{
	char want[TOKEN_LABEL_BYTES];
	CK_SLOT_ID *slots = NULL;
	CK_ULONG n = 0;
	CK_RV rv;
	int r = VAULT_ERR_CONFIG;

	if (strlen(label) > TOKEN_LABEL_BYTES)
		return vault_errorf(err, errlen, VAULT_ERR_CONFIG,
		    "PKCS#11 token label is longer than %d bytes",
		    TOKEN_LABEL_BYTES);
	memset(want, ' ', sizeof(want));
	memcpy(want, label, strlen(label));
	if ((rv = p->f->C_GetSlotList(CK_TRUE, NULL, &n)) != CKR_OK)
		return open_fail(err, errlen, VAULT_ERR_KEY, "C_GetSlotList", rv);
	if (n > 0 && (slots = calloc(n, sizeof(*slots))) == NULL)
		return VAULT_ERR_NOMEM;
	if (n > 0 && (rv = p->f->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK) {
		r = open_fail(err, errlen, VAULT_ERR_KEY, "C_GetSlotList", rv);
		goto out;
	}
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;

		if (p->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		if (memcmp(ti.label, want, TOKEN_LABEL_BYTES) == 0) {
			*slot = slots[i];
			r = 0;
			goto out;
		}
	}
	vault_errorf(err, errlen, r, "no PKCS#11 token labelled \"%s\" "
	    "(%lu token(s) present)", label, (unsigned long)n);
out:
	free(slots);
	return r;
}

static int
load_module(struct keyprov *p, const char *module, char *err, size_t errlen)
{
	CK_C_GetFunctionList get;
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
	CK_RV rv;

	if ((p->dl = dlopen(module, RTLD_NOW | RTLD_LOCAL)) == NULL)
		return vault_errorf(err, errlen, VAULT_ERR_CONFIG,
		    "cannot load PKCS#11 module %s: %s", module, dlerror());
	if ((get = (CK_C_GetFunctionList)dlsym(p->dl,
	    "C_GetFunctionList")) == NULL)
		return vault_errorf(err, errlen, VAULT_ERR_CONFIG,
		    "%s is not a PKCS#11 module (no C_GetFunctionList)", module);
	if ((rv = get(&p->f)) != CKR_OK)
		return open_fail(err, errlen, VAULT_ERR_CONFIG,
		    "C_GetFunctionList", rv);
	rv = p->f->C_Initialize(&args);
	/* Another user in this process initialised it: theirs to finalise. */
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED)
		return open_fail(err, errlen, VAULT_ERR_KEY, "C_Initialize", rv);
	p->initialized = rv == CKR_OK;
	return 0;
}

static int
login(struct keyprov *p, const char *pin_file, char *err, size_t errlen)
{
	char *pin = crypto_secret_alloc(PIN_MAX);
	size_t len;
	CK_RV rv;
	int r;

	if (pin == NULL)
		return VAULT_ERR_NOMEM;
	if ((r = read_pin(pin_file, pin, &len, err, errlen)) != 0)
		goto out;
	rv = p->f->C_Login(p->session, CKU_USER, (CK_UTF8CHAR_PTR)pin, len);
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
		r = open_fail(err, errlen, VAULT_ERR_KEY, "C_Login", rv);
out:
	crypto_secret_free(pin);	/* wipes */
	return r;
}

int
keyprov_pkcs11_open(struct keyprov **out, const struct keyprov_pkcs11_conf *c,
    char *err, size_t errlen)
{
	struct keyprov *p;
	CK_SLOT_ID slot = 0;
	CK_RV rv;
	int r;

	*out = NULL;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return VAULT_ERR_NOMEM;
	pthread_mutex_init(&p->mu, NULL);
	if ((r = load_module(p, c->module, err, errlen)) != 0 ||
	    (r = find_slot(p, c->token_label, &slot, err, errlen)) != 0)
		goto out;
	if ((rv = p->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
	    NULL, NULL, &p->session)) != CKR_OK) {
		r = open_fail(err, errlen, VAULT_ERR_KEY, "C_OpenSession", rv);
		goto out;
	}
	p->have_session = true;
	if ((r = login(p, c->pin_file, err, errlen)) != 0)
		goto out;
	*out = p;
	p = NULL;
out:
	keyprov_free(p);
	return r;
}

void
keyprov_free(struct keyprov *p)
{
	if (p == NULL)
		return;
	if (p->have_session) {
		(void)p->f->C_Logout(p->session);
		(void)p->f->C_CloseSession(p->session);
	}
	if (p->initialized)
		(void)p->f->C_Finalize(NULL);
	if (p->dl != NULL)
		dlclose(p->dl);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

const char *
keyprov_name(const struct keyprov *p)
{
	(void)p;
	return "pkcs11";
}

static void
object_label(uint32_t version, char *buf, size_t len)
{
	snprintf(buf, len, LABEL_PREFIX "%u", version);
}

/*
 * Finds the token's objects matching tmpl: up to max handles into h, their
 * number into *n. Called with p->mu held.
 */
static int
find_objects(struct keyprov *p, CK_ATTRIBUTE *tmpl, CK_ULONG ntmpl,
    CK_OBJECT_HANDLE *h, CK_ULONG max, CK_ULONG *n)
{
	CK_RV rv;

	*n = 0;
	if ((rv = p->f->C_FindObjectsInit(p->session, tmpl, ntmpl)) != CKR_OK)
		return p11_fail("C_FindObjectsInit", rv, VAULT_ERR_KEY);
	rv = p->f->C_FindObjects(p->session, h, max, n);
	(void)p->f->C_FindObjectsFinal(p->session);
	if (rv != CKR_OK)
		return p11_fail("C_FindObjects", rv, VAULT_ERR_KEY);
	return 0;
}

/* The token object of version: VAULT_ERR_NOT_FOUND when there is none. */
static int
find_version(struct keyprov *p, uint32_t version, CK_OBJECT_HANDLE *h)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_BBOOL yes = CK_TRUE;
	char label[64];
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_LABEL, label, 0 },
	};
	CK_OBJECT_HANDLE found[2];
	CK_ULONG n;
	int r;

	object_label(version, label, sizeof(label));
	tmpl[2].ulValueLen = strlen(label);
	if ((r = find_objects(p, tmpl, 3, found, 2, &n)) != 0)
		return r;
	if (n == 0)
		return VAULT_ERR_NOT_FOUND;
	if (n > 1) {
		/* Which one the store's key check value matches is not ours to guess. */
		log_error("the PKCS#11 token holds several objects labelled %s; "
		    "remove the ones vaultd did not create", label);
		return VAULT_ERR_KEY;
	}
	*h = found[0];
	return 0;
}

int
keyprov_create(struct keyprov *p, uint32_t version)
{
	CK_MECHANISM mech = { CKM_GENERIC_SECRET_KEY_GEN, NULL, 0 };
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_GENERIC_SECRET;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ULONG value_len = CRYPTO_KEY_BYTES;
	char label[64];
	uint8_t id[4] = { version >> 24, version >> 16, version >> 8, version };
	/* Only ever signs (derives working keys): nothing else, never read out. */
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &type, sizeof(type) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_VERIFY, &no, sizeof(no) },
		{ CKA_ENCRYPT, &no, sizeof(no) },
		{ CKA_DECRYPT, &no, sizeof(no) },
		{ CKA_WRAP, &no, sizeof(no) },
		{ CKA_UNWRAP, &no, sizeof(no) },
		{ CKA_DERIVE, &no, sizeof(no) },
		{ CKA_VALUE_LEN, &value_len, sizeof(value_len) },
		{ CKA_LABEL, label, 0 },
		{ CKA_ID, id, sizeof(id) },
	};
	CK_OBJECT_HANDLE h;
	CK_RV rv;
	int r;

	object_label(version, label, sizeof(label));
	tmpl[14].ulValueLen = strlen(label);
	pthread_mutex_lock(&p->mu);
	if ((r = find_version(p, version, &h)) == 0) {
		log_error("the PKCS#11 token already holds master key version %u",
		    version);
		r = VAULT_ERR_EXISTS;
		goto out;
	}
	if (r != VAULT_ERR_NOT_FOUND)
		goto out;
	if ((rv = p->f->C_GenerateKey(p->session, &mech, tmpl,
	    sizeof(tmpl) / sizeof(tmpl[0]), &h)) != CKR_OK)
		r = p11_fail("C_GenerateKey", rv, VAULT_ERR_KEY);
	else
		r = 0;
out:
	pthread_mutex_unlock(&p->mu);
	return r;
}

int
keyprov_load(struct keyprov *p, uint32_t version, uint8_t *key)
{
	CK_MECHANISM mech = { CKM_SHA256_HMAC, NULL, 0 };
	char msg[64];
	CK_ULONG len = CRYPTO_KEY_BYTES;
	CK_OBJECT_HANDLE h;
	CK_RV rv;
	int r;

	snprintf(msg, sizeof(msg), DERIVE_PREFIX "%u", version);
	pthread_mutex_lock(&p->mu);
	if ((r = find_version(p, version, &h)) != 0)
		goto out;
	if ((rv = p->f->C_SignInit(p->session, &mech, h)) != CKR_OK) {
		r = p11_fail("C_SignInit", rv, VAULT_ERR_KEY);
		goto out;
	}
	rv = p->f->C_Sign(p->session, (CK_BYTE_PTR)msg, strlen(msg), key, &len);
	if (rv != CKR_OK)
		r = p11_fail("C_Sign", rv, VAULT_ERR_KEY);
	else if (len != CRYPTO_KEY_BYTES) {
		log_error("PKCS#11 C_Sign returned %lu bytes, not %d",
		    (unsigned long)len, CRYPTO_KEY_BYTES);
		r = VAULT_ERR_KEY;
	}
out:
	pthread_mutex_unlock(&p->mu);
	if (r != 0)
		sodium_memzero(key, CRYPTO_KEY_BYTES);
	return r;
}

int
keyprov_destroy(struct keyprov *p, uint32_t version)
{
	CK_OBJECT_HANDLE h;
	CK_RV rv;
	int r;

	pthread_mutex_lock(&p->mu);
	if ((r = find_version(p, version, &h)) == VAULT_ERR_NOT_FOUND)
		r = 0;
	else if (r == 0 && (rv = p->f->C_DestroyObject(p->session, h)) != CKR_OK)
		r = p11_fail("C_DestroyObject", rv, VAULT_ERR_KEY);
	pthread_mutex_unlock(&p->mu);
	return r;
}

/* LABEL_PREFIX<version> (exactly, no leading zero): 0 and *version. */
static int
version_from_label(const char *label, size_t len, uint32_t *version)
{
	size_t plen = strlen(LABEL_PREFIX);
	uint64_t v = 0;

	if (len <= plen || len > plen + 10 ||
	    memcmp(label, LABEL_PREFIX, plen) != 0 || label[plen] == '0')
		return -1;
	for (size_t i = plen; i < len; i++) {
		if (label[i] < '0' || label[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(label[i] - '0');
	}
	if (v == 0 || v > UINT32_MAX)
		return -1;
	*version = (uint32_t)v;
	return 0;
}

/* Appends the version h is labelled with, if it is one of ours. */
static int
note_version(struct keyprov *p, CK_OBJECT_HANDLE h, uint32_t **vs, size_t *n,
    size_t *cap)
{
	char label[64];
	CK_ATTRIBUTE a = { CKA_LABEL, label, sizeof(label) };
	uint32_t v, *grown;

	if (p->f->C_GetAttributeValue(p->session, h, &a, 1) != CKR_OK ||
	    version_from_label(label, a.ulValueLen, &v) != 0)
		return 0;
	if (*n == *cap) {
		*cap = *cap == 0 ? 16 : 2 * *cap;
		if ((grown = reallocarray(*vs, *cap, sizeof(**vs))) == NULL)
			return VAULT_ERR_NOMEM;
		*vs = grown;
	}
	(*vs)[(*n)++] = v;
	return 0;
}

/* Every handle of the token's secret keys: *hs of *nh, allocated here. */
static int
all_secret_keys(struct keyprov *p, CK_OBJECT_HANDLE **hs, size_t *nh)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
	};
	CK_OBJECT_HANDLE *grown;
	CK_ULONG got;
	size_t cap = 0;
	CK_RV rv;
	int r = 0;

	*hs = NULL;
	*nh = 0;
	if ((rv = p->f->C_FindObjectsInit(p->session, tmpl, 2)) != CKR_OK)
		return p11_fail("C_FindObjectsInit", rv, VAULT_ERR_KEY);
	do {
		if (*nh + 64 > cap) {
			cap = cap == 0 ? 64 : 2 * cap;
			if ((grown = reallocarray(*hs, cap, sizeof(**hs))) == NULL) {
				r = VAULT_ERR_NOMEM;
				break;
			}
			*hs = grown;
		}
		if ((rv = p->f->C_FindObjects(p->session, *hs + *nh, 64,
		    &got)) != CKR_OK) {
			r = p11_fail("C_FindObjects", rv, VAULT_ERR_KEY);
			break;
		}
		*nh += got;
	} while (got == 64);
	(void)p->f->C_FindObjectsFinal(p->session);
	return r;
}

int
keyprov_versions(struct keyprov *p, uint32_t **out, size_t *n)
{
	CK_OBJECT_HANDLE *hs = NULL;
	uint32_t *vs = NULL;
	size_t nh = 0, cap = 0;
	int r;

	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&p->mu);
	/* Labels are read after the search ends: one operation at a time. */
	r = all_secret_keys(p, &hs, &nh);
	for (size_t i = 0; r == 0 && i < nh; i++)
		r = note_version(p, hs[i], &vs, n, &cap);
	pthread_mutex_unlock(&p->mu);
	free(hs);
	if (r != 0) {
		free(vs);
		*n = 0;
		return r;
	}
	*out = vs;
	return 0;
}
