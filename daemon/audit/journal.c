#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "util/crashpoint.h"
#include "audit/journal.h"
#include "store/meta.h"
#include "util/log.h"
#include "util/timeutil.h"

#define FMT 1
#define DOMAIN "vaultd audit journal v1"
/*
 * A record (journal.h):
 *   fmt(1) | body length(2) | journal seq(8) | at ms(8) | body | mac(32)
 */
#define J_LEN 1				/* offsets of its fields */
#define J_SEQ (J_LEN + 2)
#define J_AT (J_SEQ + 8)
#define JHDR (J_AT + 8)			/* the body */
#define MAC_BYTES 32
#define REC_MAX (JHDR + AUDIT_BODY_MAX + MAC_BYTES)
#define MAX_FILE_BYTES ((off_t)1 << 30)	/* read whole at start */
/*
 * Entries waiting to be moved in; normally one window's worth. Beyond this
 * the log is not taking them (a failing store): audited calls are refused
 * rather than memory growing without bound.
 */
#define MAX_WAITING 65536

/* An entry not yet in the audit log. */
struct jentry {
	struct jentry *next;
	uint64_t seq, at_ms;
	size_t len;
	uint8_t body[];
};

struct journal {
	struct audit_log *al;
	char *path[2];
	int fd[2];
	off_t size[2];
	off_t reserve;			/* kept allocated past each file's end */
	bool reserve_failed;		/* the last renewal failed; logged once */
	int cur;			/* the file taking appends */
	int ingest_ms, index_ms;
	pthread_mutex_t mu;
	pthread_cond_t cv;		/* entries arrived, or stop */
	struct jentry *head, *tail;	/* not yet in the audit log, in order */
	struct jentry *taken;		/* the last entry the running group took */
	size_t n_waiting, n_taken;	/* entries from head; of them, taken */
	uint64_t next_seq;
	bool waiting;			/* the thread waits for entries */
	bool stopping;
	bool broken;			/* a failed append could not be undone */
	bool full;			/* at MAX_WAITING; logged once */
	bool hooked;			/* the writer runs drain() */
	bool started;
	pthread_t thread;
};

static void
mac_of(const uint8_t *key, const uint8_t *rec, size_t n, uint8_t out[MAC_BYTES])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, key, CRYPTO_KEY_BYTES, MAC_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)DOMAIN, sizeof(DOMAIN) - 1);
	crypto_generichash_update(&st, rec, n);
	crypto_generichash_final(&st, out, MAC_BYTES);
}

/* Writes e as a record at out; returns its length. */
static size_t
encode(const struct journal *j, const struct jentry *e, uint8_t *out)
{
	out[0] = FMT;
	out[J_LEN] = (uint8_t)(e->len >> 8);
	out[J_LEN + 1] = (uint8_t)e->len;
	store_put_u64(out + J_SEQ, e->seq);
	store_put_u64(out + J_AT, e->at_ms);
	memcpy(out + JHDR, e->body, e->len);
	mac_of(keyring_audit_key(j->al->kr), out, JHDR + e->len,
	    out + JHDR + e->len);
	return JHDR + e->len + MAC_BYTES;
}

static void
free_entries(struct jentry *e)
{
	while (e != NULL) {
		struct jentry *next = e->next;

		free(e);
		e = next;
	}
}

/* ------------------------------------------------ into the audit log */

/*
 * The last journal sequence moved in: one key on a single node (unchanged
 * since before replicas), journal_seq/<replica> per replica, since each
 * replica numbers the journal files of its own.
 */
static int
put_moved_in(const struct audit_log *al, struct store_txn *txn, uint64_t seq)
{
	if (al->replica == NULL)
		return meta_put_u64(txn, META_AUDIT_JOURNAL_SEQ, 0, seq);
	return meta_put_u64_named(txn, META_JOURNAL_SEQ_OF, al->replica, seq);
}

static int
get_moved_in(const struct audit_log *al, struct store_txn *txn, uint64_t *seq)
{
	int r;

	if (al->replica == NULL)
		return meta_get_u64_or0(txn, META_AUDIT_JOURNAL_SEQ, 0, seq);
	r = meta_get_u64_named(txn, META_JOURNAL_SEQ_OF, al->replica, seq);
	return r == VAULT_ERR_NOT_FOUND ? 0 : r;
}

/* The writer's prelude: appends the waiting entries to the audit log. */
static int
drain(struct store_txn *txn, void *arg)
{
	struct journal *j = arg;
	struct jentry *e, *last;
	struct audit_batch b;
	int r;

	pthread_mutex_lock(&j->mu);
	e = j->head;
	last = j->tail;
	pthread_mutex_unlock(&j->mu);
	j->taken = NULL;
	j->n_taken = 0;
	if (e == NULL)
		return 0;
	if ((r = audit_batch_begin(txn, &b)) != 0)
		return r;
	/* Entries up to last are linked and stay put until done() frees them. */
	for (;; e = e->next) {
		if ((r = audit_batch_add(j->al, txn, &b, e->at_ms, e->body,
		    e->len, false)) != 0)
			return r;
		j->n_taken++;
		if (e == last)
			break;
	}
	if ((r = audit_batch_end(txn, &b)) != 0)
		return r;
	VAULT_CRASH_POINT("journal.ingest");	/* in the group, uncommitted */
	/* meta: the last entry moved in */
	if ((r = put_moved_in(j->al, txn, last->seq)) != 0)
		return r;
	j->taken = last;
	return 0;
}

/* After the group: what it took is in the audit log if it committed. */
static void
drained(void *arg, bool committed)
{
	struct journal *j = arg;
	struct jentry *done = NULL;

	pthread_mutex_lock(&j->mu);
	if (committed && j->taken != NULL) {
		done = j->head;
		j->head = j->taken->next;
		if (j->head == NULL)
			j->tail = NULL;
		j->taken->next = NULL;
		j->n_waiting -= j->n_taken;
		j->full = j->full && j->n_waiting > 0;
	}
	j->taken = NULL;
	j->n_taken = 0;
	pthread_mutex_unlock(&j->mu);
	free_entries(done);
}

static int
nothing(struct store_txn *txn, void *arg)
{
	(void)txn;
	(void)arg;
	return 0;
}

uint64_t
journal_mark(struct journal *j)
{
	uint64_t mark;

	pthread_mutex_lock(&j->mu);
	mark = j->next_seq - 1;
	pthread_mutex_unlock(&j->mu);
	return mark;
}

int
journal_sync_to(struct journal *j, uint64_t mark)
{
	bool waiting;

	/*
	 * Entries leave the list in order and only once committed: when the
	 * oldest one left came after mark, every entry up to it is in.
	 */
	pthread_mutex_lock(&j->mu);
	waiting = j->head != NULL && j->head->seq <= mark;
	pthread_mutex_unlock(&j->mu);
	return waiting ? writer_submit_lazy(j->al->wr, nothing, NULL) : 0;
}

int
journal_sync(struct journal *j)
{
	return journal_sync_to(j, journal_mark(j));
}

/*
 * Keeps j->reserve bytes allocated past the end of file i, so that appends
 * write into space the journal already owns and go on when the disk is
 * full. Emptying a file frees its blocks, reserve included: renewed then.
 */
static void
keep_reserve(struct journal *j, int i)
{
	bool failed;

	if (j->reserve == 0)
		return;
	failed = fallocate(j->fd[i], FALLOC_FL_KEEP_SIZE, j->size[i],
	    j->reserve) != 0;
	if (failed && !j->reserve_failed)
		log_warn("cannot reserve space for %s: %s; audited calls fail "
		    "once the disk is full", j->path[i], strerror(errno));
	else if (!failed && j->reserve_failed)
		log_info("the audit journal's space is reserved again");
	j->reserve_failed = failed;
}

/*
 * Moves every waiting entry in durably, then empties the files in mask
 * (bit i: file i), which must take no appends meanwhile. The commit is
 * lazy and this thread syncs it: the writer never waits on this fsync, so
 * neither do the writes and rotation batches queued behind it.
 */
static int
ingest(struct journal *j, unsigned mask)
{
	int r = writer_submit_lazy(j->al->wr, nothing, NULL);

	if (r == 0)
		VAULT_CRASH_POINT("journal.ingest_before_sync");
	if (r == 0)
		r = store_sync(j->al->store);
	if (r != 0) {
		log_error("cannot move the audit journal into the audit log: %s",
		    vault_strerror(r));
		return r;
	}
	VAULT_CRASH_POINT("journal.before_truncate");
	pthread_mutex_lock(&j->mu);
	for (int i = 0; i < 2; i++) {
		if (!(mask & (1u << i)))
			continue;
		if (ftruncate(j->fd[i], 0) != 0) {
			log_error("cannot empty %s: %s", j->path[i], strerror(errno));
		} else {
			j->size[i] = 0;
			keep_reserve(j, i);
		}
	}
	pthread_mutex_unlock(&j->mu);
	VAULT_CRASH_POINT("journal.after_truncate");
	return 0;
}

/*
 * Checks the audit chain since the checkpoint and moves the checkpoint to
 * its end. A break is logged once and turns health NOT_SERVING; a chain
 * found broken is not checked again (each check would read it all).
 */
static void
checkpoint(struct journal *j)
{
	struct audit_check c;
	char what[256];
	int r;

	if (j->al->broken)
		return;
	if ((r = audit_check(j->al, false, true, &c)) != 0) {
		log_error("cannot check the audit log: %s", vault_strerror(r));
		return;
	}
	if (audit_check_ok(&c))
		return;
	j->al->broken = 1;
	audit_check_describe(&c, what, sizeof(what));
	log_error("the audit log is broken: %s; found while running, it was "
	    "changed outside vaultd: health is NOT_SERVING", what);
}

/* Catches the consumer index up, a few batches at a time. */
static void
index_some(struct journal *j)
{
	bool more = true;
	int r = 0;

	for (int i = 0; i < 8 && more && r == 0; i++)
		r = audit_index(j->al, &more);
	if (r != 0)
		log_error("cannot index the audit log by consumer: %s",
		    vault_strerror(r));
}

/*
 * Every ingest_ms while entries wait: switches appends to the other file,
 * then moves the entries in; the file that took them can then be emptied.
 * Every index_ms, it also brings the consumer index up to date and moves
 * the audit checkpoint forward.
 */
static void *
journal_main(void *arg)
{
	struct journal *j = arg;
	struct timespec next_index = time_after_ms(j->index_ms);

	pthread_setname_np(pthread_self(), "vaultd-journal");

	pthread_mutex_lock(&j->mu);
	for (;;) {
		struct timespec ts;
		int old;

		j->waiting = true;
		while (j->head == NULL && !j->stopping &&
		    pthread_cond_timedwait(&j->cv, &j->mu, &next_index) == 0)
			;
		j->waiting = false;
		if (j->head != NULL) {
			ts = time_after_ms(j->ingest_ms);
			while (!j->stopping &&
			    pthread_cond_timedwait(&j->cv, &j->mu, &ts) == 0)
				;
		}
		if (j->stopping)
			break;
		if (j->head != NULL) {
			old = j->cur;
			j->cur = !old;
			pthread_mutex_unlock(&j->mu);
			VAULT_CRASH_POINT("journal.switch_file");
			(void)ingest(j, 1u << old);
			pthread_mutex_lock(&j->mu);
		}
		ts = time_after_ms(0);
		if (ts.tv_sec > next_index.tv_sec || (ts.tv_sec == next_index.tv_sec &&
		    ts.tv_nsec >= next_index.tv_nsec)) {
			pthread_mutex_unlock(&j->mu);
			index_some(j);
			checkpoint(j);
			/* Health and writes learn that space returned (store.h). */
			(void)store_room(j->al->store);
			pthread_mutex_lock(&j->mu);
			next_index = time_after_ms(j->index_ms);
		}
	}
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

/* ---------------------------------------------------------- appends */

static struct jentry *
entry_new(const struct audit_rec *rec, uint64_t at_ms)
{
	uint8_t body[AUDIT_BODY_MAX];
	size_t len = audit_encode(rec, body);
	struct jentry *e = malloc(sizeof(*e) + len);

	if (e == NULL)
		return NULL;
	e->next = NULL;
	e->at_ms = at_ms;
	e->len = len;
	memcpy(e->body, body, len);
	return e;
}

/* Writes all of buf at the end of file i, or nothing; under j->mu. */
static int
write_all(struct journal *j, int i, const uint8_t *buf, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t w = write(j->fd[i], buf + done, n - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = w < 0 ? errno : ENOSPC;

			log_error("cannot append to %s: %s", j->path[i],
			    strerror(e));
			if (done > 0 && ftruncate(j->fd[i], j->size[i]) != 0) {
				log_error("cannot undo a partial append to %s: %s; "
				    "refusing audited calls until restart",
				    j->path[i], strerror(errno));
				j->broken = true;
			}
			return e == ENOSPC || e == EDQUOT ? VAULT_ERR_NOSPACE :
			    VAULT_ERR_IO;
		}
		done += (size_t)w;
	}
	j->size[i] += (off_t)n;
	return 0;
}

int
journal_append(struct journal *j, const struct audit_rec *recs, size_t n)
{
	struct jentry *first = NULL, *last = NULL, *e;
	uint64_t now = store_now_ms();
	size_t total = 0, off = 0;
	uint8_t *buf = NULL;
	int r = VAULT_ERR_NOMEM;

	for (size_t i = 0; i < n; i++) {
		if ((e = entry_new(&recs[i], now)) == NULL)
			goto out;
		if (last != NULL)
			last->next = e;
		else
			first = e;
		last = e;
		total += JHDR + e->len + MAC_BYTES;
	}
	if (first == NULL || (buf = malloc(total)) == NULL)
		goto out;
	pthread_mutex_lock(&j->mu);
	if (j->broken || j->n_waiting + n > MAX_WAITING) {
		if (!j->broken && !j->full) {
			j->full = true;
			log_error("%zu audit entries wait to be moved into the "
			    "audit log; refusing audited calls until it takes them",
			    j->n_waiting);
		}
		pthread_mutex_unlock(&j->mu);
		r = VAULT_ERR_UNAVAILABLE;
		goto out;
	}
	/* Sequence numbers are given out in file order, under the lock. */
	for (e = first; e != NULL; e = e->next) {
		e->seq = j->next_seq++;
		off += encode(j, e, buf + off);
	}
	if ((r = write_all(j, j->cur, buf, total)) != 0) {
		j->next_seq -= n;
		pthread_mutex_unlock(&j->mu);
		goto out;
	}
	if (j->tail != NULL)
		j->tail->next = first;
	else
		j->head = first;
	j->tail = last;
	j->n_waiting += n;
	first = NULL;
	if (j->waiting)
		pthread_cond_signal(&j->cv);
	pthread_mutex_unlock(&j->mu);
	VAULT_CRASH_POINT("journal.after_append");	/* written, not yet synced */
out:
	free_entries(first);
	free(buf);
	return r;
}

/* ---------------------------------------------------------- recovery */

static int
damaged(const struct journal *j, int i, off_t at, const char *what)
{
	log_error("the audit journal %s is damaged at byte %lld: %s. It was "
	    "changed outside vaultd; restore it, or move it aside to start "
	    "without its entries", j->path[i], (long long)at, what);
	return VAULT_ERR_STATE;
}

struct found {
	struct jentry **e;
	size_t n, cap;
	uint64_t max_seq;
};

static int
found_add(struct found *f, struct jentry *e)
{
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 64;
		struct jentry **p = realloc(f->e, cap * sizeof(*p));

		if (p == NULL)
			return VAULT_ERR_NOMEM;
		f->e = p;
		f->cap = cap;
	}
	f->e[f->n++] = e;
	return 0;
}

int
journal_parse(const uint8_t *buf, size_t len, const uint8_t *key,
    journal_visit fn, void *arg, size_t *used, size_t *at, const char **why)
{
	uint8_t mac[MAC_BYTES];
	size_t off = 0;
	int r = 0;

	*why = NULL;
	while (off < len && r == 0) {
		const uint8_t *p = buf + off;
		size_t rest = len - off, n;

		n = rest >= J_SEQ ? (size_t)p[J_LEN] << 8 | p[J_LEN + 1] : 0;
		if (p[0] != FMT) {
			*why = "unknown record format";
			break;
		}
		if (n > AUDIT_BODY_MAX) {
			*why = "record longer than any entry";
			break;
		}
		if (rest < JHDR + n + MAC_BYTES)
			break;		/* cut short by a crash */
		mac_of(key, p, JHDR + n, mac);
		if (sodium_memcmp(mac, p + JHDR + n, MAC_BYTES) != 0) {
			*why = "a record fails its MAC";
			break;
		}
		if (audit_check_body(p + JHDR, n) != 0) {
			*why = "malformed entry";
			break;
		}
		r = fn(store_get_u64(p + J_SEQ), store_get_u64(p + J_AT), p + JHDR,
		    n, arg);
		off += JHDR + n + MAC_BYTES;
	}
	*used = off;
	*at = off;
	return *why != NULL ? VAULT_ERR_STATE : r;
}

struct scan {
	uint64_t after;
	struct found *f;
};

/* Keeps the entries after seq `after`. */
static int
scan_keep(uint64_t seq, uint64_t at_ms, const uint8_t *body, size_t len,
    void *arg)
{
	struct scan *s = arg;
	struct jentry *e;
	int r;

	if (seq > s->f->max_seq)
		s->f->max_seq = seq;
	if (seq <= s->after)
		return 0;
	if ((e = malloc(sizeof(*e) + len)) == NULL)
		return VAULT_ERR_NOMEM;
	e->next = NULL;
	e->seq = seq;
	e->at_ms = at_ms;
	e->len = len;
	memcpy(e->body, body, len);
	if ((r = found_add(s->f, e)) != 0)
		free(e);
	return r;
}

/* Checks every record of file i; keeps those after seq `after`. */
static int
scan_file(struct journal *j, int i, uint64_t after, struct found *f)
{
	struct scan s = { after, f };
	uint8_t *buf = NULL;
	const char *why;
	struct stat st;
	size_t used, at;
	int r;

	if (fstat(j->fd[i], &st) != 0)
		return VAULT_ERR_IO;
	if (st.st_size > MAX_FILE_BYTES)
		return damaged(j, i, 0, "larger than any journal vaultd writes");
	if (st.st_size == 0)
		return 0;
	if ((buf = malloc((size_t)st.st_size)) == NULL)
		return VAULT_ERR_NOMEM;
	if (pread(j->fd[i], buf, (size_t)st.st_size, 0) != st.st_size) {
		log_error("cannot read %s: %s", j->path[i], strerror(errno));
		free(buf);
		return VAULT_ERR_IO;
	}
	r = journal_parse(buf, (size_t)st.st_size, keyring_audit_key(j->al->kr),
	    scan_keep, &s, &used, &at, &why);
	if (why != NULL)
		r = damaged(j, i, (off_t)at, why);
	else if (r == 0 && used < (size_t)st.st_size)
		log_warn("%s: dropping %zu bytes at its end, a record cut "
		    "short by a crash", j->path[i], (size_t)st.st_size - used);
	free(buf);
	return r;
}

static int
by_seq(const void *a, const void *b)
{
	const struct jentry *x = *(struct jentry *const *)a;
	const struct jentry *y = *(struct jentry *const *)b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int
last_moved_in(struct journal *j, uint64_t *seq)
{
	struct store_txn *txn;
	int r;

	*seq = 0;
	if ((r = store_read_begin(j->al->store, &txn)) != 0)
		return r;
	r = get_moved_in(j->al, txn, seq);
	store_read_end(txn);
	return r;
}

/* Queues the entries a crash left behind, in order; checks for gaps. */
static int
recover(struct journal *j)
{
	struct found f = { 0 };
	uint64_t after;
	int r;

	if ((r = last_moved_in(j, &after)) != 0)
		return r;
	f.max_seq = after;
	for (int i = 0; i < 2 && r == 0; i++)
		r = scan_file(j, i, after, &f);
	if (r == 0 && f.n > 1)
		qsort(f.e, f.n, sizeof(*f.e), by_seq);
	for (size_t i = 0; i < f.n && r == 0; i++)
		if (f.e[i]->seq != after + 1 + i) {
			log_error("the audit journal misses entry %llu; its files "
			    "were changed outside vaultd. Move %s and %s aside to "
			    "start without their entries",
			    (unsigned long long)(after + 1 + i), j->path[0],
			    j->path[1]);
			r = VAULT_ERR_STATE;
		}
	for (size_t i = 0; i < f.n; i++) {
		if (r != 0) {
			free(f.e[i]);
			continue;
		}
		if (j->tail != NULL)
			j->tail->next = f.e[i];
		else
			j->head = f.e[i];
		j->tail = f.e[i];
		j->n_waiting++;
	}
	free(f.e);
	j->next_seq = f.max_seq + 1;
	if (r == 0 && f.n > 0)
		log_warn("an unclean stop left audit entries in the journal; "
		    "moving them into the audit log: %zu", f.n);
	return r;
}

/* ------------------------------------------------------- open, close */

int
journal_open(struct journal **out, struct audit_log *al, const char *dir,
    int ingest_ms, int index_ms)
{
	struct journal *j;
	int r = 0;

	*out = NULL;
	if ((j = calloc(1, sizeof(*j))) == NULL)
		return VAULT_ERR_NOMEM;
	j->al = al;
	j->ingest_ms = ingest_ms;
	j->index_ms = index_ms;
	j->fd[0] = j->fd[1] = -1;
	j->reserve = (off_t)al->journal_reserve;
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->cv, NULL);
	for (int i = 0; i < 2 && r == 0; i++) {
		if (asprintf(&j->path[i], "%s/audit-journal.%d", dir, i) < 0) {
			j->path[i] = NULL;
			r = VAULT_ERR_NOMEM;
		} else if ((j->fd[i] = open(j->path[i], O_RDWR | O_APPEND |
		    O_CREAT | O_CLOEXEC, 0600)) < 0) {
			log_error("cannot open %s: %s", j->path[i], strerror(errno));
			r = VAULT_ERR_IO;
		}
	}
	/* One process owns the journal: a second daemon on the store stops. */
	if (r == 0 && flock(j->fd[0], LOCK_EX | LOCK_NB) != 0) {
		log_error("%s is locked: is another vaultd running on this data "
		    "directory? (%s)", j->path[0], strerror(errno));
		r = VAULT_ERR_STATE;
	}
	if (r == 0)
		r = recover(j);
	if (r != 0) {
		journal_close(j);
		return r;
	}
	writer_add_prelude(al->wr, drain, drained, j);
	j->hooked = true;
	/* Both files are emptied once what they hold is durably moved in. */
	if (ingest(j, 3) != 0) {
		journal_close(j);
		return VAULT_ERR_STORE;
	}
	if (pthread_create(&j->thread, NULL, journal_main, j) != 0) {
		journal_close(j);
		return VAULT_ERR_INTERNAL;
	}
	j->started = true;
	*out = j;
	return 0;
}

void
journal_close(struct journal *j)
{
	if (j == NULL)
		return;
	if (j->started) {
		pthread_mutex_lock(&j->mu);
		j->stopping = true;
		pthread_cond_signal(&j->cv);
		pthread_mutex_unlock(&j->mu);
		pthread_join(j->thread, NULL);
		/*
		 * What is left goes in now; a failure leaves it for the next
		 * start. Then the checkpoint moves to the end, so the next start
		 * checks little (the writer's last sync makes it durable).
		 */
		if (ingest(j, 3) == 0)
			checkpoint(j);
	}
	if (j->hooked)
		writer_remove_prelude(j->al->wr, j);
	free_entries(j->head);
	for (int i = 0; i < 2; i++) {
		if (j->fd[i] >= 0)
			close(j->fd[i]);
		free(j->path[i]);
	}
	pthread_cond_destroy(&j->cv);
	pthread_mutex_destroy(&j->mu);
	free(j);
}

size_t
journal_backlog(struct journal *j)
{
	size_t n;

	pthread_mutex_lock(&j->mu);
	n = j->n_waiting;
	pthread_mutex_unlock(&j->mu);
	return n;
}
