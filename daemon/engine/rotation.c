#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "util/crashpoint.h"
#include "crypto/crypto.h"
#include "engine/consumer.h"
#include "engine/deletion.h"
#include "util/log.h"
#include "engine/record.h"
#include "engine/rotation.h"
#include "store/meta.h"

/*
 * meta "rotation": target version be32 | has cursor(1) | cursor ref(32) |
 * rewrapped(8) | total(8)
 */
#define STATE_HAS_CURSOR 4		/* offsets of its fields */
#define STATE_CURSOR 5
#define STATE_REWRAPPED (STATE_CURSOR + CRYPTO_REF_BYTES)
#define STATE_TOTAL (STATE_REWRAPPED + 8)
#define STATE_BYTES (STATE_TOTAL + 8)
#define BATCH 500
#define POLL_US 50000

/* One driver at a time; watchers read its progress. */
static pthread_mutex_t run_mu = PTHREAD_MUTEX_INITIALIZER;
static bool running_here;
static struct rotation_progress shared;

struct state {
	uint32_t target;
	bool has_cursor;
	uint8_t cursor[CRYPTO_REF_BYTES];
	uint64_t rewrapped, total;
};

static int
get_state(struct store_txn *txn, struct state *s, bool *found)
{
	struct store_val val;
	const uint8_t *p;
	int rc = meta_get(txn, META_ROTATION, 0, &val);

	*found = false;
	if (rc == VAULT_ERR_NOT_FOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (val.len != STATE_BYTES)
		return VAULT_ERR_STATE;
	p = val.data;
	s->target = store_get_u32(p);
	s->has_cursor = p[STATE_HAS_CURSOR] != 0;
	memcpy(s->cursor, p + STATE_CURSOR, CRYPTO_REF_BYTES);
	s->rewrapped = store_get_u64(p + STATE_REWRAPPED);
	s->total = store_get_u64(p + STATE_TOTAL);
	*found = true;
	return 0;
}

static int
put_state(struct store_txn *txn, const struct state *s)
{
	uint8_t buf[STATE_BYTES];

	store_put_u32(buf, s->target);
	buf[STATE_HAS_CURSOR] = s->has_cursor;
	memcpy(buf + STATE_CURSOR, s->cursor, CRYPTO_REF_BYTES);
	store_put_u64(buf + STATE_REWRAPPED, s->rewrapped);
	store_put_u64(buf + STATE_TOTAL, s->total);
	return meta_put(txn, META_ROTATION, 0, buf, sizeof(buf));
}

/* Within txn: the rotation under way, if any. */
static int
rotation_state(struct store_txn *txn, bool *running,
    struct rotation_progress *p)
{
	struct state s = { 0 };
	int r;

	memset(p, 0, sizeof(*p));
	if ((r = get_state(txn, &s, running)) != 0 || !*running)
		return r;
	*p = (struct rotation_progress){ s.target, s.rewrapped, s.total, false };
	return 0;
}

/*
 * Rewraps the DEKs of up to BATCH consumers after s's cursor under
 * s->target, advancing the cursor; *done once the scan reached the end.
 */
static int
rewrap_batch(struct vault *v, struct store_txn *txn, struct state *s,
    bool *done)
{
	uint8_t *dek = NULL, buf[RECORD_CONSUMER_BYTES];
	struct store_cursor *cur = NULL;
	struct store_val k, val;
	size_t n = 0;
	int rc, r = 0;

	*done = false;
	if (keyring_master(v->kr, s->target) == NULL)
		return VAULT_ERR_KEY;
	if ((dek = crypto_secret_alloc(CRYPTO_KEY_BYTES)) == NULL)
		return VAULT_ERR_NOMEM;
	if ((rc = store_cursor_open(txn, STORE_CONSUMERS, &cur)) != 0) {
		r = rc;
		goto out;
	}
	if (s->has_cursor) {
		k = (struct store_val){ CRYPTO_REF_BYTES, s->cursor };
		rc = store_cursor_get(cur, &k, &val, STORE_SEEK);
		if (rc == 0 && memcmp(k.data, s->cursor, CRYPTO_REF_BYTES) == 0)
			rc = store_cursor_get(cur, &k, &val, STORE_NEXT);
	} else {
		rc = store_cursor_get(cur, &k, &val, STORE_FIRST);
	}
	for (; rc == 0 && n < BATCH; rc = store_cursor_get(cur, &k, &val,
	    STORE_NEXT)) {
		struct consumer_rec rec;
		uint8_t ref[CRYPTO_REF_BYTES];

		memcpy(ref, k.data, CRYPTO_REF_BYTES);
		memcpy(s->cursor, ref, CRYPTO_REF_BYTES);
		s->has_cursor = true;
		n++;
		if ((r = record_parse_consumer(&val, &rec)) != 0)
			goto out;
		if (rec.master_version == s->target)
			continue;
		if ((r = record_unwrap_dek(v->kr, txn, ref, &rec, dek)) != 0)
			goto out;
		memcpy(buf, val.data, RECORD_CONSUMER_BYTES);
		store_put_u32(buf + RECORD_CONSUMER_MASTER, s->target);
		/* Format 3 has the values record of 4: bind its header too. */
		if (buf[0] == RECORD_CONSUMER_VALUES)
			buf[0] = RECORD_CONSUMER_BOUND;
		if ((r = record_wrap_dek(v->kr, ref, dek, buf)) != 0)
			goto out;
		if ((rc = store_cursor_replace(cur, buf, sizeof(buf))) != 0) {
			r = rc;
			goto out;
		}
		s->rewrapped++;
	}
	if (rc != 0 && rc != VAULT_ERR_NOT_FOUND) {
		r = rc;
		goto out;
	}
	*done = rc == VAULT_ERR_NOT_FOUND;
out:
	store_cursor_close(cur);
	crypto_secret_free(dek);
	return r;
}

static struct rotation_progress
progress_of(const struct state *s, bool done)
{
	return (struct rotation_progress){ s->target, s->rewrapped,
	    s->total > s->rewrapped ? s->total : s->rewrapped, done };
}

enum start_refusal { START_OK, START_OTHER_RUNS, START_NOT_NEWER };

struct start_job {
	struct vault *v;
	uint32_t version;
	struct rotation_progress p;
	bool joined;
	enum start_refusal why;
	uint32_t other;			/* the rotation under way, or the highest */
};

/*
 * Activates the new version and rewraps the first batch in the same
 * transaction: a store without room for one batch refuses the start, and
 * nothing changes. The cursor is not kept: until keyring_set_active runs
 * after the commit, writes still wrap new DEKs under the old version, so
 * the first step scans from the start again (and skips what is done).
 */
static int
start_apply(struct store_txn *txn, void *arg)
{
	struct start_job *job = arg;
	struct state s = { 0 };
	size_t entries;
	bool found, done;
	int r;

	if ((r = get_state(txn, &s, &found)) != 0)
		return r;
	if (found) {
		if (job->version != 0 && job->version != s.target) {
			job->why = START_OTHER_RUNS;
			job->other = s.target;
			return VAULT_ERR_STATE;
		}
		job->p = progress_of(&s, false);
		job->joined = true;
		return 0;
	}
	/* Starting is an ordinary write, refused in the headroom (store.h). */
	if ((r = store_room(job->v->store)) != 0)
		return r;
	if ((r = store_count(txn, STORE_CONSUMERS, &entries)) != 0)
		return r;
	if ((r = keyring_activate_txn(job->v->kr, txn, job->version)) != 0) {
		if (r == VAULT_ERR_STATE) {
			job->why = START_NOT_NEWER;
			if (keyring_highest_txn(txn, &job->other) != 0)
				job->other = 0;
		}
		return r;
	}
	s.target = job->version;
	s.total = entries;
	if ((r = rewrap_batch(job->v, txn, &s, &done)) != 0)
		return r;
	s.has_cursor = false;
	memset(s.cursor, 0, sizeof(s.cursor));
	job->p = progress_of(&s, false);
	return put_state(txn, &s);
}

static void
start_why(const struct start_job *job, char *why, size_t why_len)
{
	if (job->why == START_OTHER_RUNS)
		snprintf(why, why_len, "a rotation to version %u is under way; "
		    "join it with an empty new_key_id, or wait for it to end",
		    job->other);
	else if (job->why == START_NOT_NEWER)
		snprintf(why, why_len, "new_key_id: version %u is not newer than "
		    "version %u, the highest this store has had; master key "
		    "versions only move forward", job->version, job->other);
	else
		snprintf(why, why_len, "version %u cannot be used (see the server "
		    "log)", job->version);
}

/* One start at a time: a start that fails discards the version it loaded. */
static pthread_mutex_t start_mu = PTHREAD_MUTEX_INITIALIZER;

int
rotation_start(struct vault *v, uint32_t version, struct rotation_progress *p,
    char *why, size_t why_len)
{
	struct start_job job = { v, version, { 0 }, false, START_OK, 0 };
	bool running;
	struct store_txn *txn;
	int r, dr;

	why[0] = '\0';
	pthread_mutex_lock(&start_mu);
	if ((r = store_read_begin(v->store, &txn)) != 0)
		goto out;
	if ((r = rotation_state(txn, &running, p)) == 0 && !running &&
	    (r = keyring_highest_txn(txn, &job.other)) == 0 &&
	    version != 0 && version <= job.other) {
		job.why = START_NOT_NEWER;
		r = VAULT_ERR_STATE;
	}
	store_read_end(txn);
	if (r != 0)
		goto out;
	if (running) {
		if (version != 0 && version != p->target) {
			job.why = START_OTHER_RUNS;
			job.other = p->target;
			r = VAULT_ERR_STATE;
		}
		goto out;
	}
	/*
	 * Past what this process and the store have seen: another replica may
	 * have made a version this one has not loaded yet. One that starts in
	 * between is caught by keyring_activate_txn, inside the transaction.
	 */
	if (version == 0)
		job.version = keyring_next_version(v->kr) > job.other + 1 ?
		    keyring_next_version(v->kr) : job.other + 1;
	if ((r = keyring_load_version(v->kr, job.version, version == 0)) != 0)
		goto out;
	VAULT_CRASH_POINT("rotate.before_activate");
	if ((r = writer_submit(v->wr, start_apply, &job)) != 0) {
		/* Nothing committed: the key loaded for it must not linger. */
		if ((dr = keyring_discard_version(v->kr, job.version)) != 0)
			log_error("the start of the rotation to version %u failed, "
			    "but its key cannot be discarded (%s)", job.version,
			    vault_strerror(dr));
		goto out;
	}
	VAULT_CRASH_POINT("rotate.after_activate");
	*p = job.p;
	if (!job.joined) {
		keyring_set_active(v->kr, job.version);
		pthread_mutex_lock(&run_mu);
		if (!running_here)
			shared = job.p;
		pthread_mutex_unlock(&run_mu);
		log_info("master key version %u is active; rewrapping DEKs",
		    job.version);
	}
out:
	pthread_mutex_unlock(&start_mu);
	if (r == VAULT_ERR_STATE)
		start_why(&job, why, why_len);
	return r;
}

struct step_job {
	struct vault *v;
	struct rotation_progress p;
};

/* Rewraps one batch of DEKs and advances the cursor, in one transaction. */
static int
step_apply(struct store_txn *txn, void *arg)
{
	struct step_job *job = arg;
	struct vault *v = job->v;
	struct state s = { 0 };
	bool found, done;
	int r;

	if ((r = get_state(txn, &s, &found)) != 0)
		return r;
	if (!found) {
		job->p.done = true;
		return 0;
	}
	if ((r = rewrap_batch(v, txn, &s, &done)) != 0)
		return r;
	job->p = progress_of(&s, done);
	if (!done)
		return put_state(txn, &s);
	return meta_del(txn, META_ROTATION, 0);
}

int
rotation_run(struct vault *v, rotation_cb cb, void *arg)
{
	struct step_job job = { v, { 0 } };
	struct rotation_progress p;
	int r = 0;

	pthread_mutex_lock(&run_mu);
	if (running_here) {
		/* Another thread drives it: report its progress until it ends. */
		do {
			p = shared;
			pthread_mutex_unlock(&run_mu);
			if (cb != NULL && cb(&p, arg) != 0)
				return 0;
			usleep(POLL_US);
			pthread_mutex_lock(&run_mu);
		} while (running_here);
		p = shared;
		pthread_mutex_unlock(&run_mu);
		if (cb != NULL)
			cb(&p, arg);
		return 0;
	}
	running_here = true;
	job.p = shared;		/* kept if the rotation already ended */
	pthread_mutex_unlock(&run_mu);
	do {
		if ((r = writer_submit_lazy(v->wr, step_apply, &job)) != 0)
			break;
		VAULT_CRASH_POINT("rotate.batch");	/* committed, not yet synced */
		pthread_mutex_lock(&run_mu);
		shared = job.p;
		pthread_mutex_unlock(&run_mu);
		if (cb != NULL && cb(&job.p, arg) != 0)
			cb = NULL;	/* the watcher left; finish anyway */
	} while (!job.p.done);
	pthread_mutex_lock(&run_mu);
	running_here = false;
	pthread_mutex_unlock(&run_mu);
	if (r == 0)
		log_info("rotation to master key version %u done: %llu DEKs "
		    "rewrapped", job.p.target, (unsigned long long)job.p.rewrapped);
	return r;
}

/* Where version is in vs (ascending), or n. */
static size_t
version_index(const struct key_version *vs, size_t n, uint32_t version)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (vs[mid].version < version)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && vs[lo].version == version ? lo : n;
}

/*
 * How many consumer DEKs each version of vs (ascending, n entries) wraps:
 * counts[i] for vs[i].version. Only vs[i].version is read.
 */
static int
rotation_dek_counts(struct store_txn *txn, const struct key_version *vs,
    size_t n, uint64_t *counts)
{
	struct store_cursor *cur = NULL;
	struct store_val k, val;
	int rc;

	memset(counts, 0, n * sizeof(*counts));
	if ((rc = store_cursor_open(txn, STORE_CONSUMERS, &cur)) != 0)
		return rc;
	for (rc = store_cursor_get(cur, &k, &val, STORE_FIRST); rc == 0;
	    rc = store_cursor_get(cur, &k, &val, STORE_NEXT)) {
		struct consumer_rec rec;
		size_t i;

		if (record_parse_consumer(&val, &rec) != 0) {
			store_cursor_close(cur);
			return VAULT_ERR_STATE;
		}
		if ((i = version_index(vs, n, rec.master_version)) < n)
			counts[i]++;
	}
	store_cursor_close(cur);
	return rc == VAULT_ERR_NOT_FOUND ? 0 : rc;
}

struct destroy_job {
	struct vault *v;
	uint32_t version;
	uint64_t when;
	uint64_t needed;
	bool rotating;
	bool active;		/* the store's active version */
};

/* Step 1: checks, then marks the version "being destroyed" (durable). */
static int
destroy_begin_apply(struct store_txn *txn, void *arg)
{
	struct destroy_job *job = arg;
	struct rotation_progress p;
	struct key_version kv = { .version = job->version };
	bool already;
	int r;

	if ((r = keyring_version_get(job->v->kr, txn, job->version, &kv)) != 0)
		return r;
	if (kv.destroyed && !kv.destroy_pending)
		return VAULT_ERR_STATE;
	/*
	 * Checked inside the transaction: nothing may slip in between, not
	 * even another replica's rotation (the store's active version, not
	 * this process's, which may be a second behind).
	 */
	if (!kv.destroy_pending) {
		uint32_t active;

		if ((r = keyring_active_txn(txn, &active)) != 0)
			return r;
		if ((job->active = active == job->version))
			return VAULT_ERR_STATE;
		if ((r = rotation_state(txn, &job->rotating, &p)) != 0 ||
		    job->rotating)
			return r != 0 ? r : VAULT_ERR_STATE;
		if ((r = rotation_dek_counts(txn, &kv, 1, &job->needed)) != 0)
			return r;
		if (job->needed > 0)
			return VAULT_ERR_STATE;
	}
	return keyring_destroy_begin_txn(job->v->kr, txn, job->version, &already);
}

/* Step 3, once the key file is gone: destroyed, its deletions final. */
static int
destroy_apply(struct store_txn *txn, void *arg)
{
	struct destroy_job *job = arg;
	int r;

	if ((r = keyring_destroy_txn(job->v->kr, txn, job->version, job->when)) != 0)
		return r;
	return deletion_mark_final_txn(txn, job->version);
}

/*
 * The key file is wiped between two durable commits (keyring.h): a crash
 * at any step leaves either a live version with its key, or a version
 * being destroyed (or destroyed) whose file every start wipes. An
 * interrupted destruction is finished by rotation_tick, or by calling
 * this again.
 */
int
rotation_destroy(struct vault *v, uint32_t version, uint64_t *destroyed_ms,
    char *why, size_t why_len)
{
	struct destroy_job job = { v, version, 0, 0, false, false };
	int r;

	why[0] = '\0';
	/* Active or not is the store's to say, in the transaction (replicas). */
	r = writer_submit(v->wr, destroy_begin_apply, &job);
	if (r == VAULT_ERR_STATE && job.active)
		snprintf(why, why_len, "version %u is the active master key; rotate "
		    "first", version);
	else if (r == VAULT_ERR_STATE && job.rotating)
		snprintf(why, why_len, "a rotation is under way; destroy after it "
		    "ends");
	else if (r == VAULT_ERR_STATE && job.needed > 0)
		snprintf(why, why_len, "%llu DEKs are still wrapped under version "
		    "%u", (unsigned long long)job.needed, version);
	else if (r == VAULT_ERR_STATE)
		snprintf(why, why_len, "version %u is already destroyed", version);
	else if (r == VAULT_ERR_NOT_FOUND)
		snprintf(why, why_len, "no master key version %u", version);
	else if (r != 0)
		snprintf(why, why_len, "%s", vault_strerror(r));
	if (r != 0)
		return r;
	/*
	 * A recovery opens the keyring as of the journal's checkpoint: it must
	 * not predate "being destroyed" once the key file is gone.
	 */
	if ((r = store_checkpoint(v->store)) != 0) {
		snprintf(why, why_len, "the store cannot be checkpointed: %s",
		    vault_strerror(r));
		return r;
	}
	VAULT_CRASH_POINT("destroy.before_wipe");
	if ((r = keyring_forget(v->kr, version)) != 0) {
		snprintf(why, why_len, "version %u is being destroyed, but its key "
		    "file could not be wiped (see the server log); it is retried",
		    version);
		return r;
	}
	job.when = store_now_ms();
	if ((r = writer_submit(v->wr, destroy_apply, &job)) != 0) {
		snprintf(why, why_len, "version %u is being destroyed and its key "
		    "file is gone, but the store could not record it (%s); it is "
		    "retried", version, vault_strerror(r));
		return r;
	}
	VAULT_CRASH_POINT("destroy.after_commit");
	*destroyed_ms = job.when;
	log_info("master key version %u destroyed; its deletions are final",
	    version);
	return 0;
}

/* Destructions a crash or an error interrupted: finished here. */
static void
finish_destroys(struct vault *v)
{
	struct key_version *vs = NULL;
	uint64_t when;
	struct store_txn *txn;
	char why[200];
	size_t n = 0;

	if (store_read_begin(v->store, &txn) != 0)
		return;
	if (keyring_versions(v->kr, txn, &vs, &n) != 0)
		n = 0;
	store_read_end(txn);
	for (size_t i = 0; i < n; i++) {
		if (!vs[i].destroy_pending)
			continue;
		log_info("finishing the destruction of master key version %u",
		    vs[i].version);
		if (rotation_destroy(v, vs[i].version, &when, why, sizeof(why)) != 0)
			log_warn("cannot finish destroying master key version %u: %s",
			    vs[i].version, why);
	}
	free(vs);
}

struct rekey_job {
	struct vault *v;
	const uint8_t *ref;
	uint32_t gen;
};

/* New DEK: the seed and every value re-encrypted, generation + 1. */
static int
rekey_apply(struct store_txn *txn, void *arg)
{
	struct rekey_job *job = arg;
	struct vault *v = job->v;
	uint8_t *mem, *old, *new, *seed;
	uint8_t buf[RECORD_CONSUMER_BYTES];
	uint32_t ver = keyring_active_version(v->kr), gen;
	struct store_val k = { CRYPTO_REF_BYTES, (void *)job->ref }, val;
	struct values_taken t = { 0 };
	struct value_list *l = NULL;
	struct consumer_rec rec;
	int rc, r;

	if ((rc = store_get(txn, STORE_CONSUMERS, k.data, k.len, &val)) != 0)
		return rc;
	if ((mem = crypto_secret_alloc(3 * CRYPTO_KEY_BYTES)) == NULL)
		return VAULT_ERR_NOMEM;
	old = mem;
	new = mem + CRYPTO_KEY_BYTES;
	seed = mem + 2 * CRYPTO_KEY_BYTES;
	memcpy(buf, val.data, val.len < sizeof(buf) ? val.len : sizeof(buf));
	if ((r = record_parse_consumer(&val, &rec)) != 0 ||
	    (r = record_unwrap_dek(v->kr, txn, job->ref, &rec, old)) != 0 ||
	    (r = record_open_seed(old, job->ref, &rec, seed)) != 0)
		goto out;
	/*
	 * Every value of the consumer, those of attributes the schema no
	 * longer has too: none may stay sealed under the old DEK.
	 */
	if ((l = malloc(sizeof(*l))) == NULL) {
		r = VAULT_ERR_NOMEM;
		goto out;
	}
	if ((r = consumer_values_take(v, txn, job->ref, &rec, old, l, &t)) != 0)
		goto out;
	gen = rec.dek_generation + 1;
	randombytes_buf(new, CRYPTO_KEY_BYTES);
	store_put_u32(buf + RECORD_CONSUMER_MASTER, ver);
	store_put_u32(buf + RECORD_CONSUMER_GEN, gen);
	buf[0] = RECORD_CONSUMER_BOUND;		/* older formats move to it */
	if ((r = record_wrap_dek(v->kr, job->ref, new, buf)) != 0 ||
	    (r = record_seal_seed(new, job->ref, gen, seed,
	    buf + RECORD_CONSUMER_HDR + RECORD_SEALED_KEY_BYTES)) != 0 ||
	    (r = consumer_values_put_txn(v, txn, job->ref, rec.one_record, new,
	    gen, l)) != 0)
		goto out;
	if ((rc = store_put(txn, STORE_CONSUMERS, k.data, k.len, buf,
	    sizeof(buf), 0)) != 0) {
		r = rc;
		goto out;
	}
	job->gen = gen;
out:
	consumer_values_release(&t);
	free(l);
	crypto_secret_free(mem);
	return r;
}

int
rotation_consumer_key(struct vault *v, const uint8_t ref[CRYPTO_REF_BYTES],
    uint32_t *gen)
{
	struct rekey_job job = { v, ref, 0 };
	int r;

	if ((r = writer_submit(v->wr, rekey_apply, &job)) != 0)
		return r;
	*gen = job.gen;
	return 0;
}

/* Shred epochs: rotate when the active version is old, destroy when unneeded. */
static void
shred_epochs(struct vault *v)
{
	struct key_version *vs = NULL;
	struct rotation_progress p;
	uint64_t now = store_now_ms(), epoch, retain, *counts = NULL;
	uint64_t done_ms;
	uint32_t active;
	struct store_txn *txn;
	char why[200];
	size_t n = 0;
	int r;

	epoch = (uint64_t)v->cfg->shred_epoch_s * 1000ULL;
	retain = (uint64_t)v->cfg->shred_retain_s * 1000ULL;
	if (epoch == 0 || store_read_begin(v->store, &txn) != 0)
		return;
	/* The snapshot's active version: another replica may have rotated. */
	if (keyring_active_txn(txn, &active) != 0 ||
	    keyring_versions(v->kr, txn, &vs, &n) != 0 ||
	    (counts = calloc(n > 0 ? n : 1, sizeof(*counts))) == NULL ||
	    rotation_dek_counts(txn, vs, n, counts) != 0)
		n = 0;
	store_read_end(txn);
	for (size_t i = 0; i < n; i++) {
		if (vs[i].version != active || now - vs[i].created_ms < epoch)
			continue;
		log_info("shred epoch: rotating away from master key version %u",
		    active);
		if ((r = rotation_start(v, 0, &p, why, sizeof(why))) != 0)
			log_warn("shred epoch: the rotation did not start: %s",
			    why[0] != '\0' ? why : vault_strerror(r));
		else if (rotation_run(v, NULL, NULL) != 0)
			log_warn("shred epoch: the rotation stopped; it will resume");
	}
	for (size_t i = 0; i < n; i++) {
		/* Retired when the next version became active. */
		uint64_t retired = i + 1 < n ? vs[i + 1].created_ms : now;

		if (vs[i].destroyed || vs[i].version == active || counts[i] > 0 ||
		    now - retired < retain)
			continue;
		if (rotation_destroy(v, vs[i].version, &done_ms, why, sizeof(why)) != 0)
			log_warn("shred epoch: cannot destroy version %u: %s",
			    vs[i].version, why);
	}
	free(counts);
	free(vs);
}

void
rotation_tick(struct vault *v, void *arg)
{
	struct rotation_progress p;
	bool running;
	struct store_txn *txn;

	(void)arg;
	if (store_read_begin(v->store, &txn) != 0)
		return;
	if (rotation_state(txn, &running, &p) != 0)
		running = false;
	store_read_end(txn);
	if (running) {
		log_info("resuming the rotation to master key version %u", p.target);
		if (rotation_run(v, NULL, NULL) != 0)
			log_warn("the rotation stopped on an error; it will resume");
	}
	finish_destroys(v);
	shred_epochs(v);
}

int
rotation_key_status_txn(struct vault *v, struct store_txn *txn,
    bool count_deks, struct key_status *s)
{
	size_t alloc;
	int r;

	memset(s, 0, sizeof(*s));
	if ((r = keyring_active_txn(txn, &s->active)) != 0 ||
	    (r = keyring_versions(v->kr, txn, &s->vs, &s->n)) != 0)
		return r;
	alloc = s->n > 0 ? s->n : 1;
	if ((s->deks = calloc(alloc, sizeof(*s->deks))) == NULL ||
	    (s->pending = calloc(alloc, sizeof(*s->pending))) == NULL)
		return VAULT_ERR_NOMEM;
	if ((count_deks &&
	    (r = rotation_dek_counts(txn, s->vs, s->n, s->deks)) != 0) ||
	    (r = rotation_state(txn, &s->rotating, &s->p)) != 0)
		return r;
	for (size_t i = 0; i < s->n; i++)
		if ((r = deletion_pending(txn, s->vs[i].version,
		    &s->pending[i])) != 0)
			return r;
	return 0;
}

int
rotation_key_status(struct vault *v, struct key_status *s)
{
	struct store_txn *txn = NULL;
	int r;

	memset(s, 0, sizeof(*s));
	if ((r = store_read_begin(v->store, &txn)) == 0)
		r = rotation_key_status_txn(v, txn, true, s);
	store_read_end(txn);
	return r;
}

void
key_status_clear(struct key_status *s)
{
	free(s->vs);
	free(s->deks);
	free(s->pending);
	memset(s, 0, sizeof(*s));
}
