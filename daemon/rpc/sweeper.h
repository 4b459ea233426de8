/*
 * The sweeper thread (see sweeper.c); it runs until srv->sweeper_stop.
 */
#ifndef VAULT_RPC_SWEEPER_H
#define VAULT_RPC_SWEEPER_H

/* The thread's body; arg is the struct server. */
void *sweeper_main(void *arg);

#endif


