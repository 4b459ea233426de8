/*
 * Consent per consumer and purpose, and the consumer-wide flags.
 *
 * consents: ref | purpose -> fmt(1) | granted(1) | updated ms(8) | source
 *           ref | "#flags" -> fmt(1) | flags(1) | updated ms(8) | source
 *
 * A consumer may be used for a purpose when: the purpose is not a sale or
 * share while the consumer opted out of those (or sent Global Privacy
 * Control); the purpose is not an ADMT one (automated decisions) while
 * the consumer opted out of those; and its consent record for the purpose grants it, or, without
 * one, the purpose is opt-out rather than opt-in.
 */
#ifndef VAULT_CONSENT_H
#define VAULT_CONSENT_H

#include <stdbool.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "engine/vault.h"

#define CONSENT_OPT_OUT_SALE_SHARE 0x01
#define CONSENT_LIMIT_SENSITIVE 0x02
#define CONSENT_OPT_OUT_ADMT 0x04
#define CONSENT_LEGAL_HOLD 0x08		/* DROP: exempted, not deleted */
#define CONSENT_SOURCE_MAX 32
/* The source that is itself an ADMT opt-out, as "gpc" is a sale/share one. */
#define CONSENT_SOURCE_ADMT "admt_opt_out"
/* Offsets of a consent record's fields (above). */
#define CONSENT_REC_FORMAT 1
#define CONSENT_STATE 1			/* granted, or the flags */
#define CONSENT_UPDATED 2
#define CONSENT_SOURCE (CONSENT_UPDATED + 8)
#define CONSENT_REC_MAX (CONSENT_SOURCE + CONSENT_SOURCE_MAX)

enum flag_change { FLAG_KEEP, FLAG_SET, FLAG_CLEAR };

struct consent_change {
	int purpose;			/* -1: flags only */
	bool granted;
	const char *source;		/* validated by consent_check_source */
	enum flag_change limit_sensitive, opt_out_sale_share, opt_out_admt,
	    legal_hold;
	const char *principal;		/* who made it, for the history */
};

/* The longest principal name the history keeps (longer ones are cut). */
#define CONSENT_PRINCIPAL_MAX 64

/*
 * One change of a consumer's consent, as the history keeps it: the state
 * it left. Every SetConsent that changes anything, or says the same
 * again, adds one; none is ever overwritten. They are request records
 * (requests.h, kind "consent"), kept 24 months like the others, so
 * after a deletion too, as the evidence of what was honoured and when.
 */
struct consent_event {
	uint64_t at_ms;
	bool has_purpose, granted;	/* the purpose set, and to what */
	char purpose[SCHEMA_NAME_MAX];
	uint8_t flags;			/* CONSENT_* after the change */
	char source[CONSENT_SOURCE_MAX + 1];
	char principal[CONSENT_PRINCIPAL_MAX + 1];
};

/* NULL when source is [a-z0-9_-]{1,32}; else the reason. */
const char *consent_check_source(const char *source);

/*
 * In a write txn: applies change to the consumer at ref, which exists
 * (consumer_set_consent, consumer.h, makes sure), and keeps it in the
 * history. *flags is the consumer's flags afterwards. A grant or a flag
 * lifted is an ordinary write (VAULT_ERR_LIMIT in the store's headroom);
 * opt-outs and limits always go through.
 */
int consent_apply_txn(struct vault *v, struct store_txn *txn,
    const uint8_t *ref, const struct consent_change *change,
    uint8_t *flags) VAULT_WUR;

/* Within txn: the consumer's flags (CONSENT_*; 0 when none were set). */
int consent_flags(struct store_txn *txn, const uint8_t *ref,
    uint8_t *flags) VAULT_WUR;

/* Within txn: may the consumer be used for purpose? Also returns its flags. */
int consent_allows(struct vault *v, struct store_txn *txn, const uint8_t *ref,
    int purpose, bool *allowed, uint8_t *flags) VAULT_WUR;

/*
 * Within txn: calls fn for every consent record of ref: the purpose name
 * (or "#flags", whose state is the flags), state, time and source.
 */
int consent_list(struct store_txn *txn, const uint8_t *ref,
    int (*fn)(const char *name, size_t len, uint8_t state, uint64_t at_ms,
    const char *source, size_t source_len, void *arg), void *arg) VAULT_WUR;

/*
 * In a snapshot of its own: fn for each consent change of ref, oldest
 * first, at most max of them (the oldest); *more says whether there were
 * more. A record that does not read is skipped.
 */
int consent_history(struct vault *v, const uint8_t ref[CRYPTO_REF_BYTES],
    size_t max, int (*fn)(const struct consent_event *e, void *arg),
    void *arg, bool *more) VAULT_WUR;

/* Within a write txn: removes every consent record of ref. */
int consent_delete_all(struct store_txn *txn,
    const uint8_t *ref) VAULT_WUR;

#endif
