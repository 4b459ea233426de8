/*
 * The sweeper thread: once a second it cancels the calls whose request
 * message is overdue and writes the denial summaries that are due; at stop,
 * the last summaries.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "rpc/authz.h"
#include "rpc/denial.h"
#include "rpc/internal.h"
#include "rpc/pending.h"
#include "rpc/sweeper.h"
#include "util/log.h"
#include "util/timeutil.h"

/* One audit entry for the anonymous denials counted over interval_ms. */
static void
write_denial_summary(void *arg, const char *peer, const char *reason,
    const char *method, uint64_t count, int64_t interval_ms)
{
	struct server *srv = arg;
	struct rpc_audit rec = { .principal = "-", .method = method,
	    .outcome = strcmp(reason, DENY_METADATA) == 0 ? "invalid" :
	    "unauthenticated" };

	snprintf(rec.detail, sizeof(rec.detail), "%llu more denials from %s "
	    "in the last %lld s: %s", (unsigned long long)count, peer,
	    (long long)(interval_ms / 1000), reason);
	if (srv->sink->append(srv->app, &rec) != 0)
		log_error("the audit summary of %llu denials cannot be written",
		    (unsigned long long)count);
}

/* Once a second: denial summaries that are due, overdue request messages. */
void *
sweeper_main(void *arg)
{
	struct server *srv = arg;

	pthread_setname_np(pthread_self(), "vaultd-sweeper");
	pthread_mutex_lock(&srv->mu);
	while (!srv->sweeper_stop) {
		struct timespec ts = time_after_ms(1000);

		pthread_cond_timedwait(&srv->sweep_cv, &srv->mu, &ts);
		pthread_mutex_unlock(&srv->mu);
		pending_sweep(srv, now_ms());
		if (srv->sink != NULL)
			denials_flush(srv->denials, now_ms(), false,
			    write_denial_summary, srv);
		pthread_mutex_lock(&srv->mu);
	}
	pthread_mutex_unlock(&srv->mu);
	if (srv->sink != NULL)
		denials_flush(srv->denials, now_ms(), true, write_denial_summary,
		    srv);
	return NULL;
}
