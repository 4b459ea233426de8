/*
 * Pseudonymous, tokenized feature rows for ML, a page at a time.
 *
 * A page is read in one read-only transaction (a consistent snapshot): the
 * consumers after a given ref, in ref order, those whose consent covers the
 * purpose, each as pseudonym + one token per attribute. The page's last
 * scanned ref is where the next page starts, so a stream resumed from it
 * has neither duplicates nor gaps.
 *
 * Lineage: before a page leaves the vault, the refs it holds are recorded
 * against the dataset (durably), so a later deletion knows who received
 * the consumer.
 */
#ifndef VAULT_FETCH_H
#define VAULT_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "tokenize.h"
#include "vault.h"

struct fetch_query {
	int purpose;
	const int *attrs;
	size_t n_attrs;
	uint32_t batch_size;		/* rows per page at most */
	bool has_after;
	uint8_t after[CRYPTO_REF_BYTES];	/* start after this ref */
	int64_t today_days;		/* for age bands */
};

struct fetch_page {
	size_t n, cap, n_attrs;
	uint8_t (*refs)[CRYPTO_REF_BYTES];
	uint8_t (*pseudonyms)[TOKEN_PSEUDONYM_BYTES];
	uint64_t *tokens;		/* n rows of n_attrs */
	bool has_last;
	uint8_t last[CRYPTO_REF_BYTES];	/* last ref scanned */
	bool done;			/* the scan reached the end */
	uint8_t *scratch;		/* locked */
};

int fetch_page_init(struct fetch_page *pg, size_t cap,
    size_t n_attrs) VAULT_WUR;
void fetch_page_free(struct fetch_page *pg);

int fetch_read_page(struct vault *v, const struct fetch_query *q,
    struct fetch_page *pg) VAULT_WUR;

/* Records that dataset received every consumer of the page; durable. */
int fetch_record_lineage(struct vault *v, uint32_t dataset,
    const struct fetch_page *pg) VAULT_WUR;

/* Days since 1970-01-01, today (UTC). */
int64_t fetch_today(void);

#endif
