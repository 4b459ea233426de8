/*
 * The worker pool: where handlers run (see worker.c).
 */
#ifndef VAULT_RPC_WORKER_H
#define VAULT_RPC_WORKER_H

struct rpc_ctx;

/* A worker thread's body; arg is its struct worker. */
void *worker_main(void *arg);

/*
 * Hands a decoded call (or one refused early, to be audited) to a worker,
 * or a stream to a thread of its own; a call refused here is finished.
 */
void worker_schedule(struct rpc_ctx *c);

#endif


