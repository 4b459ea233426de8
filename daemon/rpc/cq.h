/*
 * The completion-queue threads: calls armed, and taken from arrival to a
 * worker (see cq.c).
 */
#ifndef VAULT_RPC_CQ_H
#define VAULT_RPC_CQ_H

/* A completion-queue thread's body; arg is its struct cq_thread. */
void *cq_main(void *arg);

#endif


