#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "conf/auth.h"
#include "util/crashpoint.h"
#include "crypto/crypto.h"
#include "devmode.h"
#include "store/store.h"
#include "util/fsutil.h"
#include "crypto/keyring.h"
#include "util/log.h"

static const char dev_config[] =
"# vaultd development config, written on first run by 'vaultd --dev'.\n"
"# Paths are relative to this file. See docs/config.md.\n"
"listen = \"" DEVMODE_LISTEN "\";\n"
"store_dir = \"db\";\n"
"keys_dir = \"keys\";\n"
"policy_file = \"policy.conf\";\n"
"token_pepper_file = \"keys/token-pepper\";\n"
"insecure_plaintext = true;   # development only: loopback, no TLS\n"
"log_level = \"info\";\n"
"# Space kept for deletions and the audit log on a full disk (smaller\n"
"# than the defaults, 64 and 4: development stores are many and small).\n"
"disk_reserve_mb = 4;\n"
"audit_journal_reserve_mb = 1;\n"
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
"# admt: automated decisions with a significant effect (CCPA ADMT): a\n"
"# consumer's opt_out_admt flag excludes them.\n"
"purposes = (\n"
"  { name = \"service\"; basis = \"opt_out\"; essential = true; },\n"
"  { name = \"training\"; basis = \"opt_out\"; },\n"
"  { name = \"ad_targeting_shared\"; basis = \"opt_out\"; sale_or_share = true;\n"
"    attributes = [\"age\", \"device\", \"income_band\", \"purchases_90d\",\n"
"                  \"last_purchase\", \"converted\"]; },\n"
"  { name = \"research\"; basis = \"opt_in\"; },\n"
"  { name = \"eligibility\"; basis = \"opt_out\"; admt = true;\n"
"    attributes = [\"age\", \"income_band\", \"purchases_90d\"]; }\n"
");\n";

/*
 * Roles name the methods they may call (deny by default). The dev principal
 * holds every role through its token; each role also has a principal known
 * by its client certificate (vaultd --dev --tls writes those under tls/).
 */
static const char dev_policy[] =
"# vaultd development policy. See docs/config.md.\n"
"roles = {\n"
"  writer = [\"/vault.v1.Consumers/PutAttributes\", \"/vault.v1.Consumers/SetConsent\"];\n"
"  reader = [\"/vault.v1.Consumers/GetAttributes\"];\n"
"  ml = [\"/vault.v1.Features/FetchFeatures\", \"/vault.v1.Features/GetFeatureSpec\",\n"
"        \"/vault.v1.Deletion/WatchDeletions\", \"/vault.v1.Features/WatchConsent\"];\n"
"  privacy = [\"/vault.v1.Deletion/DeleteConsumer\", \"/vault.v1.Deletion/DeleteConsumers\",\n"
"             \"/vault.v1.Deletion/WatchDeletions\", \"/vault.v1.Consumers/ExportConsumer\",\n"
"             \"/vault.v1.Consumers/SetConsent\", \"/vault.v1.Features/WatchConsent\",\n"
"             \"/vault.v1.Deletion/ProcessDropList\"];\n"
"  keyadmin = [\"/vault.v1.Keys/RotateMasterKey\", \"/vault.v1.Keys/GetKeyStatus\",\n"
"              \"/vault.v1.Keys/DestroyMasterKey\", \"/vault.v1.Keys/RotateConsumerKey\"];\n"
"  auditor = [\"/vault.v1.Audit/QueryAudit\", \"/vault.v1.Audit/VerifyAudit\",\n"
"             \"/vault.v1.Audit/AuditReport\"];\n"
"  backup = [\"/vault.v1.Admin/Backup\", \"/vault.v1.Admin/ExportDeletions\"];\n"
"};\n"
"\n"
"principals = (\n"
"  { name = \"dev\"; token_hash = \"%s\";\n"
"    roles = [\"writer\", \"reader\", \"ml\", \"privacy\", \"keyadmin\", \"auditor\",\n"
"             \"backup\"];\n"
"    purposes = [\"*\"]; },\n"
"  { name = \"writer\"; identity = \"writer\"; roles = [\"writer\"]; },\n"
"  { name = \"reader\"; identity = \"reader\"; roles = [\"reader\"]; purposes = [\"service\"]; },\n"
"  { name = \"ml\"; identity = \"ml\"; roles = [\"ml\"]; purposes = [\"training\", \"research\"]; },\n"
"  { name = \"privacy\"; identity = \"privacy\"; roles = [\"privacy\"]; purposes = [\"*\"]; },\n"
"  { name = \"keyadmin\"; identity = \"keyadmin\"; roles = [\"keyadmin\"]; },\n"
"  { name = \"auditor\"; identity = \"auditor\"; roles = [\"auditor\"]; },\n"
"  { name = \"backup\"; identity = \"backup\"; roles = [\"backup\"]; }\n"
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

/* Whole or absent (fsutil.h); replace: over an existing file. */
static int
write_file(const char *path, const void *data, size_t len, bool replace)
{
	int r = fsutil_write_atomic(path, data, len, 0600,
	    replace ? FSUTIL_REPLACE : 0, "dev");

	if (r == VAULT_ERR_EXISTS)
		log_error("cannot create %s: it exists", path);
	return r;
}

/* A token holding every role, and a policy naming only its hash. */
static int
make_token_and_policy(const char *dir, const char *pepper_path)
{
	char path[4096], policy[4096], hash[AUTH_HASH_BYTES * 2 + 1];
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
	n = snprintf(policy, sizeof(policy), dev_policy, hash);
	/* The policy first: a crash before the token makes the next start redo both. */
	snprintf(path, sizeof(path), "%s/policy.conf", dir);
	if ((r = write_file(path, policy, (size_t)n, true)) != 0)
		goto out;
	VAULT_CRASH_POINT("dev.after_policy");
	snprintf(path, sizeof(path), "%s/dev-token", dir);
	r = write_file(path, token, strlen(token), true);
out:
	crypto_secret_free(raw);
	crypto_secret_free(token);
	crypto_secret_free(pepper);
	return r;
}

/* True when the store was created before (a non-empty data file). */
static bool
has_store(const char *dir)
{
	char path[4096];
	bool exists = false;

	snprintf(path, sizeof(path), "%s/db", dir);
	return store_exists(path, &exists) == 0 && exists;
}

/*
 * What a first run creates, in this order: the directories, vaultd.conf,
 * keys/token-pepper, policy.conf and dev-token (master-1.key comes with the
 * store). Each file appears whole (fsutil.h), so a run killed anywhere
 * leaves complete files, and the next run creates the rest. A directory
 * that holds a store but no keys directory is refused before anything is
 * written: its keys are lost or elsewhere, and new ones would not open it.
 */
int
devmode_prepare(const char *dir, char *config_path, size_t len)
{
	char path[4096], policy[4096], token[4096];
	struct stat sb;
	bool new_pepper = false;
	int r;

	snprintf(path, sizeof(path), "%s/keys", dir);
	if (has_store(dir) && (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))) {
		log_error("%s holds a store but no keys directory %s: its master "
		    "keys are needed to open it; nothing was written", dir, path);
		return VAULT_ERR_KEY;
	}
	if ((r = ensure_path(dir)) != 0)
		return r;
	if ((r = ensure_dir(path)) != 0)
		return r;
	/* db/ is the store's: vault_open makes it for a new vault only. */
	snprintf(config_path, len, "%s/vaultd.conf", dir);
	if (access(config_path, F_OK) != 0 &&
	    (r = write_file(config_path, dev_config, sizeof(dev_config) - 1,
	    false)) != 0)
		return r;
	VAULT_CRASH_POINT("dev.after_config");
	snprintf(path, sizeof(path), "%s/keys/token-pepper", dir);
	if (access(path, F_OK) != 0) {
		if ((r = keyring_create_secret_file(path, "token pepper file")) != 0)
			return r;
		new_pepper = true;
	}
	VAULT_CRASH_POINT("dev.after_pepper");
	snprintf(policy, sizeof(policy), "%s/policy.conf", dir);
	snprintf(token, sizeof(token), "%s/dev-token", dir);
	/* A new pepper makes the old policy's token hash useless: both anew. */
	if (new_pepper || access(policy, F_OK) != 0 || access(token, F_OK) != 0) {
		if ((r = make_token_and_policy(dir, path)) != 0)
			return r;
		log_info("wrote a development token holding every role to %s",
		    token);
	}
	return 0;
}

/* Runs an openssl command line; 0 when it succeeded. */
static int
openssl(const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(cmd))
		return VAULT_ERR_INVALID;
	if (system(cmd) != 0) {
		log_error("openssl failed: is Debian's openssl package installed?");
		return VAULT_ERR_IO;
	}
	return 0;
}

/* A key and a certificate signed by the dev CA, for CN name and san. */
static int
issue(const char *tls, const char *name, const char *san, const char *usage)
{
	char ext[4200];
	int r;

	snprintf(ext, sizeof(ext), "%s/%s.ext", tls, name);
	{
		FILE *f = fopen(ext, "w");

		if (f == NULL)
			return VAULT_ERR_IO;
		fprintf(f, "subjectAltName=%s\nextendedKeyUsage=%s\n", san, usage);
		fclose(f);
	}
	r = openssl("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
	    "-nodes -keyout '%s/%s.key' -out '%s/%s.csr' -subj '/CN=%s' 2>/dev/null "
	    "&& openssl x509 -req -in '%s/%s.csr' -CA '%s/ca.pem' -CAkey '%s/ca.key' "
	    "-CAcreateserial -days 825 -out '%s/%s.pem' -extfile '%s' 2>/dev/null",
	    tls, name, tls, name, name, tls, name, tls, tls, tls, name, ext);
	unlink(ext);
	snprintf(ext, sizeof(ext), "%s/%s.csr", tls, name);
	unlink(ext);
	return r;
}

/* fsyncs every file in dir, then dir. */
static int
sync_files(const char *dir)
{
	struct dirent *e;
	char path[4096];
	DIR *d;
	int fd, r = 0;

	if ((d = opendir(dir)) == NULL)
		return VAULT_ERR_IO;
	while (r == 0 && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >=
		    (int)sizeof(path)) {
			r = VAULT_ERR_IO;
			break;
		}
		if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
		    fsync(fd) != 0)
			r = VAULT_ERR_IO;
		if (fd >= 0)
			close(fd);
	}
	closedir(d);
	return r == 0 ? fsutil_sync_dir(dir) : r;
}

int
devmode_tls(const char *dir, char *out, size_t len)
{
	static const char *const roles[] = { "writer", "reader", "ml", "privacy",
	    "keyadmin", "auditor", "backup" };
	char tls[4200], cmd[8500];
	mode_t old;
	int r = 0;

	snprintf(out, len, "%s/tls", dir);
	if (access(out, F_OK) == 0)
		return 0;
	if (strchr(dir, '\'') != NULL) {
		log_error("the data directory's path must not hold a quote");
		return VAULT_ERR_INVALID;
	}
	/* Made aside and renamed into place, so no one sees half of it. */
	snprintf(tls, sizeof(tls), "%s/tls.new", dir);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tls);
	if (system(cmd) != 0 || (r = ensure_dir(tls)) != 0)
		return r != 0 ? r : VAULT_ERR_IO;
	old = umask(077);
	r = openssl("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
	    "-nodes -keyout '%s/ca.key' -out '%s/ca.pem' -days 825 "
	    "-subj '/CN=vaultd development CA' 2>/dev/null", tls, tls);
	if (r == 0)
		r = issue(tls, "server", "DNS:localhost,IP:127.0.0.1,IP:::1",
		    "serverAuth");
	for (size_t i = 0; r == 0 && i < sizeof(roles) / sizeof(roles[0]); i++) {
		char san[64];

		snprintf(san, sizeof(san), "DNS:%s", roles[i]);
		r = issue(tls, roles[i], san, "clientAuth");
	}
	umask(old);
	/* Durable before it is published: no empty certificate after a power cut. */
	if (r == 0)
		r = sync_files(tls);
	VAULT_CRASH_POINT("dev.before_tls_rename");
	if (r == 0 && (rename(tls, out) != 0 || fsutil_sync_dir(dir) != 0))
		r = VAULT_ERR_IO;
	if (r == 0)
		log_info("wrote a development CA, a server certificate and one client "
		    "certificate per role to %s", out);
	return r;
}
