#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "auth.h"
#include "crypto.h"
#include "devmode.h"
#include "keyring.h"
#include "log.h"

static const char dev_config[] =
"# vaultd development config, written on first run by 'vaultd --dev'.\n"
"# Paths are relative to this file. See docs/config.md.\n"
"listen = \"127.0.0.1:50051\";\n"
"store_dir = \"db\";\n"
"keys_dir = \"keys\";\n"
"policy_file = \"policy.conf\";\n"
"token_pepper_file = \"keys/token-pepper\";\n"
"insecure_plaintext = true;   # development only: loopback, no TLS\n"
"log_level = \"info\";\n"
"\n"
"# Features: categories become keyed tokens (values held by fewer than\n"
"# suppression_k consumers become OTHER), ints become buckets, dates years.\n"
"suppression_k = 5;\n"
"\n"
"schema = (\n"
"  { name = \"email\"; type = \"string\"; max_length = 254; },\n"
"  { name = \"zip\"; type = \"string\"; max_length = 10; },\n"
"  { name = \"age\"; type = \"int\"; min = 0L; max = 130L;\n"
"    buckets = [18, 25, 35, 45, 55, 65]; },\n"
"  { name = \"device\"; type = \"category\"; max_length = 16;\n"
"    values = [\"mobile\", \"desktop\", \"tablet\", \"tv\", \"other\"]; },\n"
"  { name = \"income_band\"; type = \"category\"; max_length = 16;\n"
"    values = [\"low\", \"lower_middle\", \"middle\", \"upper_middle\", \"high\"]; },\n"
"  { name = \"purchases_90d\"; type = \"int\"; min = 0L; max = 100000L;\n"
"    buckets = [1, 2, 4, 8, 16]; },\n"
"  { name = \"last_purchase\"; type = \"date\"; feature = \"year\"; },\n"
"  { name = \"email_opt_in\"; type = \"bool\"; },\n"
"  { name = \"ethnicity\"; type = \"category\"; max_length = 32; sensitive = true; },\n"
"  { name = \"converted\"; type = \"bool\"; }   # the demo's training label\n"
");\n"
"\n"
"# basis: opt_in (excluded until consent) or opt_out (included until opt-out).\n"
"# essential: providing the service itself; sensitive data stays usable.\n"
"purposes = (\n"
"  { name = \"service\"; basis = \"opt_out\"; essential = true; },\n"
"  { name = \"training\"; basis = \"opt_out\"; },\n"
"  { name = \"ad_targeting_shared\"; basis = \"opt_out\"; sale_or_share = true;\n"
"    attributes = [\"age\", \"device\", \"income_band\", \"purchases_90d\",\n"
"                  \"last_purchase\", \"converted\"]; },\n"
"  { name = \"research\"; basis = \"opt_in\"; }\n"
");\n";

static int
ensure_dir(const char *path)
{
	struct stat sb;

	if (mkdir(path, 0700) == 0)
		return 0;
	if (errno == EEXIST && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
		return 0;
	log_error("cannot create directory %s: %s", path, strerror(errno));
	return VAULT_ERR_IO;
}

/* mkdir -p for the data directory itself (it may be nested, ./var/vault). */
static int
ensure_path(const char *dir)
{
	char buf[4096];
	int r;

	if (strlen(dir) >= sizeof(buf))
		return VAULT_ERR_INVALID;
	snprintf(buf, sizeof(buf), "%s", dir);
	for (char *p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if ((r = ensure_dir(buf)) != 0)
			return r;
		*p = '/';
	}
	return ensure_dir(buf);
}

static int
write_new_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);

	if (fd < 0) {
		log_error("cannot create %s: %s", path, strerror(errno));
		return VAULT_ERR_IO;
	}
	if (write(fd, data, len) != (ssize_t)len || fsync(fd) != 0) {
		log_error("cannot write %s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return VAULT_ERR_IO;
	}
	close(fd);
	return 0;
}

/* A token holding every role, and a policy naming only its hash. */
static int
make_token_and_policy(const char *dir, const char *pepper_path)
{
	char path[4096], policy[1024], hash[AUTH_HASH_BYTES * 2 + 1];
	char *token = NULL;
	uint8_t *raw = NULL, *pepper = NULL;
	size_t tok_len = sodium_base64_ENCODED_LEN(32,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	int r = VAULT_ERR_NOMEM, n;

	if ((raw = crypto_secret_alloc(32)) == NULL ||
	    (token = crypto_secret_alloc(tok_len + 1)) == NULL ||
	    (pepper = crypto_secret_alloc(CRYPTO_KEY_BYTES)) == NULL)
		goto out;
	if ((r = keyring_read_secret_file(pepper_path, pepper,
	    "token pepper file")) != 0)
		goto out;
	randombytes_buf(raw, 32);
	sodium_bin2base64(token, tok_len, raw, 32,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	auth_token_hash_hex(pepper, token, strlen(token), hash);
	n = snprintf(policy, sizeof(policy),
	    "# vaultd development policy: principals, their token hashes and roles.\n"
	    "principals = (\n"
	    "  { name = \"dev\"; token_hash = \"%s\";\n"
	    "    roles = [\"writer\", \"reader\", \"ml\", \"privacy\", \"keyadmin\", \"auditor\"];\n"
	    "    purposes = [\"*\"]; }\n"
	    ");\n", hash);
	snprintf(path, sizeof(path), "%s/policy.conf", dir);
	unlink(path);
	if ((r = write_new_file(path, policy, (size_t)n, 0600)) != 0)
		goto out;
	snprintf(path, sizeof(path), "%s/dev-token", dir);
	unlink(path);
	r = write_new_file(path, token, strlen(token), 0600);
out:
	crypto_secret_free(raw);
	crypto_secret_free(token);
	crypto_secret_free(pepper);
	return r;
}

int
devmode_prepare(const char *dir, char *config_path, size_t len)
{
	char path[4096], policy[4096], token[4096];
	int r;

	if ((r = ensure_path(dir)) != 0)
		return r;
	snprintf(path, sizeof(path), "%s/keys", dir);
	if ((r = ensure_dir(path)) != 0)
		return r;
	snprintf(path, sizeof(path), "%s/db", dir);
	if ((r = ensure_dir(path)) != 0)
		return r;
	snprintf(config_path, len, "%s/vaultd.conf", dir);
	if (access(config_path, F_OK) != 0 &&
	    (r = write_new_file(config_path, dev_config, sizeof(dev_config) - 1,
	    0600)) != 0)
		return r;
	snprintf(path, sizeof(path), "%s/keys/token-pepper", dir);
	if (access(path, F_OK) != 0 &&
	    (r = keyring_create_secret_file(path, "token pepper file")) != 0)
		return r;
	snprintf(policy, sizeof(policy), "%s/policy.conf", dir);
	snprintf(token, sizeof(token), "%s/dev-token", dir);
	if (access(policy, F_OK) != 0 || access(token, F_OK) != 0) {
		if ((r = make_token_and_policy(dir, path)) != 0)
			return r;
		log_info("wrote a development token holding every role to %s",
		    token);
	}
	return 0;
}
