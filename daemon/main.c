/*
 * vaultd: the encrypted personal-data vault daemon.
 *
 *   vaultd --dev [--data-dir DIR] [--listen HOST:PORT]   development vault
 *   vaultd --config FILE [--verify-audit] [--init]       production
 *   vaultd --check-config FILE                           validate and exit
 *   vaultd --gen-key FILE                                new master key file
 *   vaultd --hash-token (--config FILE | --dev)          token hash for a policy
 *   vaultd --purge-unknown-attributes (--config FILE | --dev)
 *                                   remove values the schema no longer has
 *   vaultd --restore FILE (--deletions FILE | --no-deletions) (--config FILE | --dev)
 *   vaultd --compact | --migrate (--config FILE | --dev)   (maint.h)
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "audit/audit.h"
#include "engine/check.h"
#include "conf/auth.h"
#include "conf/config.h"
#include "crypto/crypto.h"
#include "devmode.h"
#include "notify.h"
#include "api/handlers.h"
#include "engine/janitor.h"
#include "engine/replica.h"
#include "maint.h"
#include "audit/journal.h"
#include "crypto/keyring.h"
#include "util/log.h"
#include "engine/rotation.h"
#include "rpc/server.h"
#include "engine/unknown_attrs.h"
#include "engine/vault.h"
#include "metrics.h"
#include "rpc/stats.h"

#define VAULTD_VERSION "0.1.0"
#define EXIT_USAGE 2

struct options {
	bool dev, hash_token, tls, purge_unknown, verify_audit, init, check;
	const char *data_dir, *listen, *config, *check_config, *gen_key,
	    *log_level, *metrics_listen;
	/* Maintenance (maint.h). */
	const char *restore, *deletions;
	bool no_deletions, compact, migrate;
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: vaultd --dev [--tls] [--data-dir DIR] [--listen HOST:PORT] [--init]\n"
	    "       vaultd --config FILE [--listen HOST:PORT] [--verify-audit] [--init]\n"
	    "       vaultd --check-config FILE\n"
	    "       vaultd --check (--config FILE | --dev [--data-dir DIR])\n"
	    "       vaultd --gen-key FILE\n"
	    "       vaultd --hash-token (--config FILE | --dev [--data-dir DIR]) < token\n"
	    "       vaultd --purge-unknown-attributes (--config FILE | --dev [--data-dir DIR])\n"
	    "       vaultd --restore FILE (--deletions FILE | --no-deletions)\n"
	    "              (--config FILE | --dev --data-dir DIR)\n"
	    "       vaultd --compact | --migrate (--config FILE | --dev [--data-dir DIR])\n"
	    "options:\n"
	    "  --dev              development vault under --data-dir (default ./var/vault),\n"
	    "                     created on first run; plaintext on loopback only\n"
	    "  --tls              with --dev: make a dev CA and certificates under\n"
	    "                     DIR/tls (once) and serve mTLS\n"
	    "  --data-dir DIR     where --dev keeps its config, keys and store\n"
	    "  --listen ADDR      host:port to serve on (default 127.0.0.1:50051)\n"
	    "  --metrics-listen ADDR\n"
	    "                     host:port of the Prometheus endpoint, or \"off\"\n"
	    "                     (default: metrics_listen; dev mode 127.0.0.1:9464)\n"
	    "  --config FILE      run with this config file\n"
	    "  --verify-audit     at start, check the whole audit chain (by default,\n"
	    "                     the entries since the last checkpoint)\n"
	    "  --init             create a new vault (store and master-1.key); refused\n"
	    "                     where a store or a master key file exists\n"
	    "  --check-config F   validate a config and its policy, then exit\n"
	    "  --check            walk the whole store offline (the daemon must be\n"
	    "                     stopped); print what is damaged; exit 0 when clean\n"
	    "  --gen-key FILE     write a new 32-byte master key file (mode 0600)\n"
	    "  --hash-token       read a bearer token on stdin, print its policy hash\n"
	    "  --purge-unknown-attributes\n"
	    "                     delete the stored values of attributes the schema no\n"
	    "                     longer has (the daemon must be stopped), then exit\n"
	    "  --restore FILE     restore a backup (vaultctl backup) into an empty store\n"
	    "                     directory, applying again every deletion of the\n"
	    "                     --deletions export made since (docs/backup.md)\n"
	    "  --compact          swap in a compact copy of the store (stopped daemon)\n"
	    "  --migrate          upgrade the store's format (stopped daemon)\n"
	    "  --log-level LEVEL  error, warn, info or debug\n"
	    "  --version, --help\n");
}

/* A maintenance command comes alone; a restore names its deletion export. */
static bool
maint_options_bad(const struct options *o)
{
	int maint = (o->restore != NULL) + o->compact + o->migrate;
	int other = o->purge_unknown + o->hash_token + o->check + o->init +
	    o->verify_audit + o->tls;

	if (maint > 1 || (maint == 1 && other > 0))
		return true;
	if (o->restore == NULL)
		return o->deletions != NULL || o->no_deletions;
	if ((o->deletions != NULL) == o->no_deletions) {
		fprintf(stderr, "vaultd: --restore needs --deletions FILE (the "
		    "deletion export taken after the backup), or --no-deletions\n");
		return true;
	}
	return false;
}

static int
parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "dev", no_argument, NULL, 'd' },
		{ "data-dir", required_argument, NULL, 'D' },
		{ "listen", required_argument, NULL, 'l' },
		{ "metrics-listen", required_argument, NULL, 'M' },
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", required_argument, NULL, 'C' },
		{ "check", no_argument, NULL, 'K' },
		{ "gen-key", required_argument, NULL, 'g' },
		{ "hash-token", no_argument, NULL, 't' },
		{ "purge-unknown-attributes", no_argument, NULL, 'P' },
		{ "tls", no_argument, NULL, 'T' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "verify-audit", no_argument, NULL, 'A' },
		{ "init", no_argument, NULL, 'I' },
		{ "restore", required_argument, NULL, 'R' },
		{ "deletions", required_argument, NULL, 'E' },
		{ "no-deletions", no_argument, NULL, 'N' },
		{ "compact", no_argument, NULL, 'O' },
		{ "migrate", no_argument, NULL, 'U' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	memset(o, 0, sizeof(*o));
	o->data_dir = "./var/vault";
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd': o->dev = true; break;
		case 'D': o->data_dir = optarg; break;
		case 'l': o->listen = optarg; break;
		case 'M': o->metrics_listen = optarg; break;
		case 'c': o->config = optarg; break;
		case 'C': o->check_config = optarg; break;
		case 'K': o->check = true; break;
		case 'g': o->gen_key = optarg; break;
		case 't': o->hash_token = true; break;
		case 'P': o->purge_unknown = true; break;
		case 'T': o->tls = true; break;
		case 'L': o->log_level = optarg; break;
		case 'A': o->verify_audit = true; break;
		case 'I': o->init = true; break;
		case 'R': o->restore = optarg; break;
		case 'E': o->deletions = optarg; break;
		case 'N': o->no_deletions = true; break;
		case 'O': o->compact = true; break;
		case 'U': o->migrate = true; break;
		case 'V': printf("vaultd %s\n", VAULTD_VERSION); exit(0);
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind != argc || (o->dev && o->config != NULL) || (o->tls && !o->dev) ||
	    (o->purge_unknown && (o->hash_token || o->tls)) ||
	    (o->init && (o->purge_unknown || o->hash_token)) ||
	    (!o->dev && o->config == NULL && o->check_config == NULL &&
	    o->gen_key == NULL)) {
		usage(stderr);
		return -1;
	}
	if (maint_options_bad(o)) {
		usage(stderr);
		return -1;
	}
	if (o->log_level != NULL && log_level_parse(o->log_level) < 0) {
		fprintf(stderr, "vaultd: unknown log level\n");
		return -1;
	}
	return 0;
}

static bool
maint_command(const struct options *o)
{
	return o->restore != NULL || o->compact || o->migrate;
}

/*
 * --dev --restore: checked before dev mode writes its config into the
 * data directory, so a refused restore changes no file (devmode.c's
 * layout: DIR/db, DIR/keys).
 */
static int
dev_restore_check(const struct options *o)
{
	char store[4096], keys[4096], path[4096], err[512];
	struct config *cfg = NULL;
	bool token = false;

	/* Keys on a token: maint_restore checks them, with the config loaded. */
	snprintf(path, sizeof(path), "%s/vaultd.conf", o->data_dir);
	if (access(path, F_OK) == 0 &&
	    config_load(&cfg, path, err, sizeof(err)) == 0) {
		token = strcmp(cfg->key_provider, "pkcs11") == 0;
		config_free(cfg);
	}
	snprintf(store, sizeof(store), "%s/db", o->data_dir);
	snprintf(keys, sizeof(keys), "%s/keys", o->data_dir);
	return token ? 0 : maint_restore_check(o->restore, o->deletions, store,
	    keys);
}

/* The methods a policy may name: the dispatch table's paths. */
static int
load_policy(struct auth **auth, const struct config *cfg, char *err,
    size_t errlen)
{
	const char *known[64];
	size_t n = 0;

	for (size_t i = 0; i < dispatch_n_methods && n < 64; i++)
		known[n++] = dispatch_methods[i].path;
	return auth_load(auth, cfg->policy_file, cfg->token_pepper_file, known, n,
	    err, errlen);
}

static int
check_config(const char *path)
{
	struct config *cfg = NULL;
	struct auth *auth = NULL;
	char err[512];

	if (config_load(&cfg, path, err, sizeof(err)) != 0 ||
	    reflection_configure(cfg->reflection, cfg->reflection_idle_s,
	    err, sizeof(err)) != 0 ||
	    load_policy(&auth, cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "vaultd: %s\n", err);
		config_free(cfg);
		return 1;
	}
	printf("%s: ok (%zu attributes, %zu purposes)\n", path,
	    cfg->schema.n_attrs, cfg->schema.n_purposes);
	auth_unref(auth);
	config_free(cfg);
	return 0;
}

static int
hash_token(const struct config *cfg)
{
	char line[1024], hex[AUTH_HASH_BYTES * 2 + 1];
	uint8_t *pepper = crypto_secret_alloc(CRYPTO_KEY_BYTES);
	size_t n;
	int r = 1;

	if (pepper == NULL ||
	    keyring_read_secret_file(cfg->token_pepper_file, pepper,
	    "token pepper file") != 0)
		goto out;
	if (fgets(line, sizeof(line), stdin) == NULL) {
		fprintf(stderr, "vaultd: no token on stdin\n");
		goto out;
	}
	n = strcspn(line, "\r\n");
	if (n < 16) {
		fprintf(stderr, "vaultd: a token must be at least 16 bytes\n");
		goto out;
	}
	auth_token_hash_hex(pepper, line, n, hex);
	printf("%s\n", hex);
	r = 0;
out:
	sodium_memzero(line, sizeof(line));
	crypto_secret_free(pepper);
	return r;
}

/*
 * --purge-unknown-attributes: only with the store to itself. The audit
 * journal's lock is the daemon's: while one runs, opening it fails and
 * nothing is purged.
 */
static int
purge_unknown(const struct config *cfg)
{
	struct vault *v = NULL;
	struct unknown_attrs n;
	int r = 1;

	if (vault_open_locked(&v, cfg, VAULT_OPEN_EXISTING, true) != 0) {
		log_error("cannot open the vault, or another vaultd serves it "
		    "(stop the daemon first); nothing was purged");
		goto out;
	}
	if (vault_open_journal(v) != 0) {
		log_error("the store is in use or its audit journal cannot be "
		    "opened: stop the daemon first; nothing was purged");
		goto out;
	}
	if (unknown_attrs_purge(v, &n) != 0) {
		log_error("the purge failed; what it removed so far is gone, run it "
		    "again for the rest");
		goto out;
	}
	log_info("purged %llu attribute value(s) of %llu consumer(s) outside the "
	    "schema", (unsigned long long)n.values, (unsigned long long)n.consumers);
	printf("purged %llu attribute value(s) of %llu consumer(s) outside the "
	    "schema\n", (unsigned long long)n.values,
	    (unsigned long long)n.consumers);
	r = 0;
out:
	vault_close(v);
	return r;
}

/* --dev --tls: certificates under DIR/tls, and the config pointed at them. */
static int
dev_tls(const struct options *o, struct config *cfg)
{
	char tls[4096];

	if (devmode_tls(o->data_dir, tls, sizeof(tls)) != 0)
		return -1;
	free(cfg->tls_cert);
	free(cfg->tls_key);
	free(cfg->tls_client_ca);
	if (asprintf(&cfg->tls_cert, "%s/server.pem", tls) < 0 ||
	    asprintf(&cfg->tls_key, "%s/server.key", tls) < 0 ||
	    asprintf(&cfg->tls_client_ca, "%s/ca.pem", tls) < 0)
		return -1;
	cfg->insecure_plaintext = false;
	return 0;
}

/*
 * A first --dev start writes its files before the server binds: a port in
 * use is found here first, so that such a start writes nothing. Only a
 * port in use refuses; anything else is left to the server.
 */
static int
probe_listen(const char *listen)
{
	struct addrinfo hints = { .ai_flags = AI_PASSIVE,
	    .ai_socktype = SOCK_STREAM }, *res = NULL;
	char host[256], *colon;
	int fd, r = 0;

	if (snprintf(host, sizeof(host), "%s", listen) >= (int)sizeof(host) ||
	    (colon = strrchr(host, ':')) == NULL)
		return 0;
	*colon = '\0';
	if (host[0] == '[' && colon > host + 1 && colon[-1] == ']') {
		colon[-1] = '\0';
		memmove(host, host + 1, strlen(host + 1) + 1);
	}
	if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
		return 0;
	if ((fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC,
	    res->ai_protocol)) >= 0) {
		if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 &&
		    errno == EADDRINUSE) {
			log_error("cannot listen on %s: %s; nothing was written",
			    listen, strerror(errno));
			r = -1;
		}
		close(fd);
	}
	freeaddrinfo(res);
	return r;
}

/* Core dumps would hold keys and plaintext: never write them. */
static void
harden_process(void)
{
	struct rlimit rl = { 0, 0 };

	setrlimit(RLIMIT_CORE, &rl);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/*
 * The config as the command line shapes it: --listen and --dev --tls
 * override the file, at start and at every SIGHUP alike.
 */
static int
load_config(const struct options *o, struct config **out)
{
	struct config *cfg = NULL;
	char err[512];

	*out = NULL;
	if (config_load(&cfg, o->config, err, sizeof(err)) != 0) {
		log_error("%s", err);
		return -1;
	}
	if (o->listen != NULL) {
		free(cfg->listen);
		if ((cfg->listen = strdup(o->listen)) == NULL) {
			config_free(cfg);
			return -1;
		}
	}
	if (o->metrics_listen != NULL) {
		free(cfg->metrics_listen);
		if ((cfg->metrics_listen = strdup(o->metrics_listen)) == NULL) {
			config_free(cfg);
			return -1;
		}
	}
	if (o->tls && dev_tls(o, cfg) != 0) {
		config_free(cfg);
		return -1;
	}
	*out = cfg;
	return 0;
}

/* What a SIGHUP found changed in the config file: applied, or not. */
struct reload_report {
	const struct options *o;
	const struct config *next;
	char applied[512], restart[512];
};

static void
report_add(char *list, size_t len, const char *name)
{
	size_t used = strlen(list);

	snprintf(list + used, len - used, "%s%s", used ? ", " : "", name);
}

/* The settings a running vaultd takes on SIGHUP; the rest need a restart. */
static void
reload_setting(const char *name, void *arg)
{
	struct reload_report *rr = arg;

	if (strcmp(name, "log_level") == 0 && rr->o->log_level == NULL) {
		log_set_level((enum log_level)log_level_parse(rr->next->log_level));
		report_add(rr->applied, sizeof(rr->applied), name);
		return;
	}
	report_add(rr->restart, sizeof(rr->restart), name);
}

/*
 * SIGHUP: the policy (a new one if it loads, else the old one stays), the
 * TLS files at the next handshake, and the config file read again: what
 * can change live is applied, what cannot is named and keeps its running
 * value until a restart.
 */
static void
reload(struct server *srv, const struct options *o, const struct config *cfg)
{
	struct reload_report rr = { .o = o };
	struct config *next = NULL;
	struct auth *auth = NULL;
	char err[512];

	notify_reloading();
	if (load_config(o, &next) != 0)
		log_error("SIGHUP: the config file was not read again (above); "
		    "every setting keeps its running value");
	if (load_policy(&auth, cfg, err, sizeof(err)) != 0) {
		log_error("SIGHUP: the policy was not reloaded, the previous one "
		    "stays: %s", err);
		server_reload(srv, NULL);
	} else {
		server_reload(srv, auth);
		auth_unref(auth);
		log_info("SIGHUP: policy reloaded from %s%s", cfg->policy_file,
		    cfg->tls_cert ? "; TLS files are read again at the next "
		    "handshake" : "");
	}
	if (next != NULL) {
		rr.next = next;
		config_diff(cfg, next, reload_setting, &rr);
		if (rr.applied[0] == '\0' && rr.restart[0] == '\0')
			log_info("SIGHUP: no setting changed in %s", o->config);
		if (rr.applied[0] != '\0')
			log_info("SIGHUP: applied: %s", rr.applied);
		if (rr.restart[0] != '\0')
			log_warn("SIGHUP: changed in %s but applied only at the "
			    "next restart: %s", o->config, rr.restart);
		config_free(next);
	}
	notify_ready("serving");
}

static uint64_t
monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * The audit chain before anything is served: the entries since the last
 * checkpoint, or (whole) all of them. Broken, the start is refused, or
 * with audit_broken = "not_serving" health answers NOT_SERVING. Only an
 * intact chain writes (its checkpoint), so a refused start changes nothing.
 */
static int
check_audit(struct vault *v, const struct config *cfg, bool whole)
{
	uint64_t t0 = monotonic_ms();
	struct audit_check c;
	char what[256];
	int r;

	if ((r = audit_check(&v->audit, whole, true, &c)) != 0) {
		log_error("cannot check the audit log: %s", vault_strerror(r));
		return -1;
	}
	if (audit_check_ok(&c)) {
		log_info("audit log intact: %llu entries checked (%s) in %llu ms",
		    (unsigned long long)c.entries, whole ? "the whole chain, "
		    "--verify-audit" : c.checkpoint ? "since the checkpoint" :
		    "the whole chain: no checkpoint yet",
		    (unsigned long long)(monotonic_ms() - t0));
		return 0;
	}
	audit_check_describe(&c, what, sizeof(what));
	if (strcmp(cfg->audit_broken, "not_serving") != 0) {
		log_error("the audit log is broken: %s; refusing to start "
		    "(audit_broken = \"refuse\"). Restore the store from a "
		    "backup, or set audit_broken = \"not_serving\" to inspect it "
		    "with Audit.VerifyAudit", what);
		return -1;
	}
	v->audit.broken = 1;
	log_error("the audit log is broken: %s; serving with health "
	    "NOT_SERVING (audit_broken = \"not_serving\")", what);
	return 0;
}

/*
 * Waits for a signal; with a systemd watchdog, wakes twice per interval to
 * ping it, but only after the writer took a no-op: a vault whose writer is
 * stuck (a hung disk) stops pinging and systemd restarts it.
 */
static int
wait_signal(const sigset_t *set, struct vault *v, uint64_t watchdog_ms)
{
	struct timespec ts = { (time_t)(watchdog_ms / 2000),
	    (long)(watchdog_ms / 2 % 1000) * 1000000L };
	int sig;

	for (;;) {
		if (watchdog_ms == 0) {
			if (sigwait(set, &sig) == 0)
				return sig;
			continue;
		}
		if ((sig = sigtimedwait(set, NULL, &ts)) > 0)
			return sig;
		if (errno == EAGAIN) {
			vault_ping(v);
			notify_watchdog();
		}
	}
}

static int
serve(struct config *cfg, const struct options *o)
{
	bool dev = o->dev, verify_audit = o->verify_audit, init = o->init;
	uint64_t watchdog_ms = notify_watchdog_ms();
	struct auth *auth = NULL;
	struct vault *v = NULL;
	struct server *srv = NULL;
	struct janitor *jan = NULL;
	struct replica *rep = NULL;
	struct rpc_stats *stats = NULL;
	struct metrics *met = NULL;
	struct server_opts so;
	char err[512];
	sigset_t set;
	struct stat sb;
	bool started = false;
	int sig, r = 1;

	if (cfg->tls_cert == NULL && !cfg->insecure_plaintext) {
		log_error("no TLS configured: set tls_cert, tls_key and "
		    "tls_client_ca (or, for development on loopback only, "
		    "insecure_plaintext = true)");
		return 1;
	}
	if (cfg->tls_cert == NULL && !config_listen_is_loopback(cfg->listen)) {
		log_error("plaintext is refused on %s: listen on a loopback "
		    "address, or configure TLS", cfg->listen);
		return 1;
	}
	if (crypto_check_mlock() != 0) {
		log_error("CANNOT LOCK MEMORY: keys may be swapped to disk; raise "
		    "RLIMIT_MEMLOCK (LimitMEMLOCK= in systemd)%s",
		    cfg->require_mlock ? "; refusing to start (require_mlock)" : "");
		if (cfg->require_mlock)
			return 1;
	}
	if (reflection_configure(cfg->reflection, cfg->reflection_idle_s,
	    err, sizeof(err)) != 0 ||
	    load_policy(&auth, cfg, err, sizeof(err)) != 0) {
		log_error("%s", err);
		return 1;
	}
	/*
	 * The port and the TLS files first: a start refused for them has
	 * opened nothing else, so it changes no file. The store's start-up
	 * writes (a new store, the audit checkpoint, the journal) come after.
	 */
	so = (struct server_opts){ .listen = cfg->listen, .tls_cert = cfg->tls_cert,
	    .tls_key = cfg->tls_key, .tls_client_ca = cfg->tls_client_ca,
	    .tls_require_client_cert = cfg->tls_require_client_cert,
	    .cq_threads = cfg->cq_threads, .workers = cfg->workers,
	    .max_request_bytes = cfg->max_request_bytes,
	    .shutdown_grace_ms = cfg->shutdown_grace_ms,
	    .max_streams = cfg->max_streams,
	    .max_streams_per_principal = cfg->max_streams_per_principal,
	    .max_public_streams = cfg->max_public_streams,
	    .max_public_streams_per_peer = cfg->max_public_streams_per_peer,
	    .auth_failures_per_peer = cfg->auth_failures_per_peer,
	    .denial_audit_interval_s = cfg->denial_audit_interval_s,
	    .transport_memory_mb = cfg->transport_memory_mb,
	    .max_pending_requests = cfg->max_pending_requests,
	    .max_pending_requests_per_peer = cfg->max_pending_requests_per_peer,
	    .request_timeout_ms = cfg->request_timeout_ms,
	    .audit = &audit_sink,
	    .strings = &dispatch_strings };
	if (rpc_stats_new(&stats, dispatch_n_methods) != 0)
		goto out;
	so.stats = stats;
	if (server_bind(&srv, &so, dispatch_methods, dispatch_n_methods,
	    auth) != 0 || metrics_start_configured(&met, cfg, dev,
	    &(struct metrics_source){ .rpc = stats, .methods = dispatch_methods,
	    .n_methods = dispatch_n_methods, .version = VAULTD_VERSION,
	    .dek_refresh_ms = cfg->metrics_dek_refresh_s * 1000 }) != 0) {
		log_error("not started; nothing was written");
		goto out;
	}
	/* Before the store is opened: opening a new one creates its files. */
	if (stat(cfg->keys_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		log_error("the keys directory %s is missing or not a directory; "
		    "nothing was written", cfg->keys_dir);
		goto out;
	}
	if (vault_open_locked(&v, cfg, init ? VAULT_OPEN_INIT : dev ?
	    VAULT_OPEN_CREATE : VAULT_OPEN_EXISTING,
	    cfg->replica_name == NULL) != 0) {
		log_error("cannot open the vault; nothing was written");
		goto out;
	}
	if (verify_audit)
		log_info("checking the whole audit chain (--verify-audit)");
	if (check_audit(v, cfg, verify_audit) != 0)
		goto out;
	if (vault_open_journal(v) != 0) {
		log_error("cannot open the audit journal; stopping");
		goto out;
	}
	/* Informational: a failure to count does not stop the vault. */
	if (unknown_attrs_report(v) != 0)
		log_warn("could not count stored attributes outside the schema");
	/* Before the janitor: only the lease's holder runs its passes. */
	if (replica_start(&rep, v) != 0)
		goto out;
	v->rep = rep;
	server_run(srv, v);
	metrics_attach(met, v);
	started = true;
	if (janitor_start(&jan, v, rotation_tick, NULL) != 0) {
		server_stop(srv);
		srv = NULL;
		goto out;
	}
	log_info("vaultd %s ready%s", VAULTD_VERSION, dev ? " (development mode)" : "");
	if (watchdog_ms > 0)
		log_info("systemd watchdog: pinging every %llu ms",
		    (unsigned long long)watchdog_ms / 2);
	notify_ready("serving");
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	for (;;) {
		sig = wait_signal(&set, v, watchdog_ms);
		if (sig == SIGHUP) {
			reload(srv, o, cfg);
			continue;
		}
		log_info("signal %d: shutting down", sig);
		break;
	}
	notify_stopping();
	server_stop(srv);
	janitor_stop(jan);
	r = 0;
	srv = NULL;
out:
	metrics_stop(met);
	if (!started)
		server_discard(srv);
	if (v != NULL)
		v->rep = NULL;
	replica_stop(rep);
	vault_close(v);
	rpc_stats_free(stats);
	auth_unref(auth);
	return r;
}

/*
 * VAULTD_DEV_CLOCK_SHIFT_S=N (tests): the vault's clock runs N seconds
 * ahead (store_clock_shift). A --dev vault only: a real vault refuses it.
 */
static int
clock_shift(const struct options *o)
{
	const char *s = getenv("VAULTD_DEV_CLOCK_SHIFT_S");
	char *end;
	long long n;

	if (s == NULL || s[0] == '\0')
		return 0;
	if (!o->dev) {
		fprintf(stderr, "vaultd: VAULTD_DEV_CLOCK_SHIFT_S is for tests "
		    "of a --dev vault; unset it\n");
		return -1;
	}
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || n < -INT32_MAX ||
	    n > INT32_MAX) {
		fprintf(stderr, "vaultd: VAULTD_DEV_CLOCK_SHIFT_S: not a number "
		    "of seconds\n");
		return -1;
	}
	store_clock_shift((int64_t)n * 1000);
	log_warn("the vault's clock runs %lld s ahead "
	    "(VAULTD_DEV_CLOCK_SHIFT_S): a test vault", n);
	return 0;
}

int
main(int argc, char **argv)
{
	struct options o;
	struct config *cfg = NULL;
	char config_path[4096];
	sigset_t set;
	int r;

	if (parse_options(argc, argv, &o) != 0)
		return EXIT_USAGE;
	if (o.log_level != NULL)
		log_set_level((enum log_level)log_level_parse(o.log_level));
	harden_process();
	if (crypto_init() != 0) {
		log_error("libsodium failed to initialise");
		return 1;
	}
	if (o.gen_key != NULL)
		return keyring_create_key_file(o.gen_key) == 0 ? 0 : 1;
	if (o.check_config != NULL)
		return check_config(o.check_config);

	/* Signals are taken by sigwait in serve(); block them before gRPC's threads. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (clock_shift(&o) != 0)
		return EXIT_USAGE;
	if (o.dev) {
		snprintf(config_path, sizeof(config_path), "%s/vaultd.conf",
		    o.data_dir);
		if (o.restore != NULL && dev_restore_check(&o) != 0)
			return 1;
		if (access(config_path, F_OK) != 0 && !o.hash_token &&
		    !o.purge_unknown && !maint_command(&o) &&
		    probe_listen(o.listen != NULL ? o.listen : DEVMODE_LISTEN) != 0)
			return 1;
		if (devmode_prepare(o.data_dir, config_path, sizeof(config_path)) != 0)
			return 1;
		o.config = config_path;
	}
	if (load_config(&o, &cfg) != 0)
		return 1;
	if (o.log_level == NULL)
		log_set_level((enum log_level)(log_level_parse(cfg->log_level) < 0 ?
		    LOG_LEVEL_INFO : log_level_parse(cfg->log_level)));
	log_set_format((enum log_format)log_format_parse(cfg->log_format));
	if (o.hash_token) {
		r = hash_token(cfg);
		config_free(cfg);
		return r;
	}
	if ((o.check || maint_command(&o)) &&
	    strcmp(cfg->store_backend, "lmdb") != 0) {
		log_error("--check, --restore, --compact and --migrate work on an "
		    "LMDB store; a PostgreSQL store is checked, backed up and "
		    "restored with PostgreSQL's tools (docs/scaling.md)");
		config_free(cfg);
		return 1;
	}
	if (o.check) {
		r = check_store(cfg);
		config_free(cfg);
		return r;
	}
	if (o.purge_unknown) {
		r = purge_unknown(cfg);
		config_free(cfg);
		return r;
	}
	if (maint_command(&o)) {
		r = o.restore != NULL ? maint_restore(cfg, o.restore, o.deletions) :
		    o.compact ? maint_compact(cfg) : maint_migrate(cfg);
		config_free(cfg);
		return r;
	}
	server_global_init();
	r = serve(cfg, &o);
	server_global_shutdown();
	config_free(cfg);
	return r;
}
