/*
 * The help of each command: what it does, its options, an example. Kept
 * apart from the command table (vaultctl.c) so that a command added there
 * works at once, with its usage line as its help until it gets a text here.
 */
#include <stdio.h>
#include <string.h>

#include "vaultctl.h"

struct help {
	const char *name;
	const char *text;
};

static const struct help helps[] = {
	{ "health",
	  "usage: vaultctl health [SERVICE]\n"
	  "\n"
	  "Asks the gRPC health service: SERVING (exit 0) or NOT_SERVING (exit 6).\n"
	  "SERVICE is a service name such as vault.v1.Consumers; none: the server.\n"
	  "\n"
	  "example:\n"
	  "  vaultctl health vault.v1.Consumers\n" },
	{ "put",
	  "usage: vaultctl put CONSUMER NAME=VALUE...\n"
	  "\n"
	  "Writes attributes of a consumer (creating it): all or nothing. NAME is\n"
	  "an attribute of the schema; an unknown name is refused with the names\n"
	  "the schema has.\n"
	  "\n"
	  "example:\n"
	  "  vaultctl put nina@example.com email=nina@example.com age=29\n" },
	{ "get",
	  "usage: vaultctl get CONSUMER [NAME...] [--purpose P]\n"
	  "\n"
	  "Reads attributes of a consumer (all, or the NAMEs) for a purpose.\n"
	  "\n"
	  "options:\n"
	  "  --purpose P      the purpose of the read (default: service)\n"
	  "\n"
	  "example:\n"
	  "  vaultctl get nina@example.com age --purpose analytics\n" },
	{ "delete",
	  "usage: vaultctl delete CONSUMER [--request-id ID]\n"
	  "       vaultctl delete CONSUMER...\n"
	  "       vaultctl delete --from-file FILE [--batch-size N]\n"
	  "\n"
	  "Deletes consumers and prints one signed receipt each, in input order.\n"
	  "A request id is the idempotency key: the same id again gives the same\n"
	  "receipt (found as the first time). Without one, the vault makes one.\n"
	  "\n"
	  "FILE (\"-\": stdin) holds one consumer a line, of any number: either\n"
	  "\"CONSUMER,REQUEST_ID\" (split at the last comma; a first line\n"
	  "\"consumer_id,request_id\" is a header), so that running the file again\n"
	  "after a failure is idempotent, or a bare CONSUMER, which gets a fresh\n"
	  "request id on every run. Blank lines are skipped. The whole file is\n"
	  "checked first; a bad line is named by its number, never echoed. The\n"
	  "lines go in batches of DeleteConsumers calls; a progress bar shows on\n"
	  "stderr when it is a terminal. When a batch fails, the message says\n"
	  "which lines are done, and how to resume.\n"
	  "\n"
	  "options:\n"
	  "  --request-id ID  the request id of a single deletion\n"
	  "  --from-file FILE the consumers to delete, one a line\n"
	  "  --batch-size N   consumers per call (default 1000, the server's\n"
	  "                   default max_delete_batch; lowered to the server's\n"
	  "                   limit when it says so)\n"
	  "\n"
	  "example:\n"
	  "  vaultctl --json delete --from-file dsr-2026-12.csv > receipts.jsonl\n" },
	{ "watch-deletions",
	  "usage: vaultctl watch-deletions [--dataset D | --purpose P] [--after SEQ]\n"
	  "                                [--follow]\n"
	  "\n"
	  "Streams deletion events (JSON lines) of one dataset, one purpose's\n"
	  "datasets, or all.\n"
	  "\n"
	  "options:\n"
	  "  --dataset D      events of dataset D\n"
	  "  --purpose P      events of the datasets of purpose P\n"
	  "  --after SEQ      events after sequence number SEQ\n"
	  "  --follow         keep the stream open for new events\n"
	  "\n"
	  "example:\n"
	  "  vaultctl watch-deletions --dataset churn-2026 --after 1200 --follow\n" },
	{ "watch-consent",
	  "usage: vaultctl watch-consent [--dataset D | --purpose P] [--after SEQ]\n"
	  "                              [--follow]\n"
	  "\n"
	  "Streams consent revocations (JSON lines): a pseudonym a dataset\n"
	  "received that may no longer be used for the dataset's purpose (an\n"
	  "opt-out, a consent withdrawn, Global Privacy Control for a sale or\n"
	  "share purpose), for one dataset, one purpose's datasets, or all.\n"
	  "\n"
	  "options:\n"
	  "  --dataset D      events of dataset D\n"
	  "  --purpose P      events of the datasets of purpose P\n"
	  "  --after SEQ      events after sequence number SEQ\n"
	  "  --follow         keep the stream open for new events\n"
	  "\n"
	  "example:\n"
	  "  vaultctl watch-consent --purpose ad_targeting_shared --follow\n" },
	{ "drop",
	  "usage: vaultctl drop process FILE [--list-type T] [--out FILE]\n"
	  "                             [--receipts FILE] [--batch-size N]\n"
	  "\n"
	  "Processes a DROP list file (California's Delete Act): each line's\n"
	  "hashed identifier is matched against the vault's DROP index; one\n"
	  "consumer is deleted (status 3, a receipt), or exempted under a legal\n"
	  "hold (2); several sharing it are opted out of sale and sharing (4);\n"
	  "none: 5. A Removed file (header ID,Hash,ListType) records\n"
	  "cancellations, which later lists leave alone. Writes the report\n"
	  "(Id,Status); running a file again gives the same statuses.\n"
	  "\n"
	  "options:\n"
	  "  --list-type T    Email, Phone, MAID, CTVID, NDZ or NameVIN (default:\n"
	  "                   from the file's name, <date>_<broker>_<Type>.csv)\n"
	  "  --out FILE       the report (default: stdout)\n"
	  "  --receipts FILE  append the deletions' receipts (JSON lines)\n"
	  "  --batch-size N   lines per call (default 1000)\n"
	  "\n"
	  "example:\n"
	  "  vaultctl drop process 20260901_1234_Email.csv --out results.csv\n" },
	{ "receipt",
	  "usage: vaultctl receipt verify FILE [--public-key HEX]\n"
	  "\n"
	  "Checks the signature of every receipt in FILE (as \"vaultctl --json\n"
	  "delete\" prints them). Exit 0 only when every line is valid.\n"
	  "\n"
	  "options:\n"
	  "  --public-key HEX the receipt public key (default: asked of the vault)\n"
	  "\n"
	  "example:\n"
	  "  vaultctl receipt verify receipts.jsonl\n" },
	{ "export",
	  "usage: vaultctl export CONSUMER\n"
	  "\n"
	  "Everything the vault holds about a consumer (attributes, consents,\n"
	  "datasets, access history) as one JSON document: the right to know.\n"
	  "\n"
	  "example:\n"
	  "  vaultctl export nina@example.com > nina.json\n" },
	{ "backup",
	  "usage: vaultctl backup --out FILE\n"
	  "\n"
	  "A hot, compact, consistent copy of the store with its manifest (role\n"
	  "backup). FILE is created mode 0600 and appears whole or not at all;\n"
	  "an existing FILE is never overwritten. Take a deletion export after\n"
	  "it: a restore needs both (docs/backup.md).\n"
	  "\n"
	  "options:\n"
	  "  --out FILE       where to write the backup\n"
	  "\n"
	  "example:\n"
	  "  vaultctl backup --out /backups/vault-$(date +%F).backup\n" },
	{ "deletions",
	  "usage: vaultctl deletions export --out FILE [--after SEQ]\n"
	  "\n"
	  "The deletion log (keyed consumer refs, never ids, with their times)\n"
	  "that a restore (vaultd(8)) applies again, so a restored backup never\n"
	  "brings a deleted consumer back (role backup). Keep it apart from the\n"
	  "store.\n"
	  "\n"
	  "options:\n"
	  "  --out FILE       where to write the export (0600, never overwritten)\n"
	  "  --after SEQ      only deletions after SEQ (default: all kept)\n"
	  "\n"
	  "example:\n"
	  "  vaultctl deletions export --out /offsite/deletions-$(date +%F)\n" },
	{ "audit",
	  "usage: vaultctl audit verify\n"
	  "       vaultctl audit query [--since T] [--until T] [--principal P]\n"
	  "                            [--consumer ID] [--method M] [--limit N]\n"
	  "       vaultctl audit report [--since T] [--until T] [--factor N]\n"
	  "\n"
	  "verify checks the hash chain of the audit log. query prints entries\n"
	  "(JSON lines), oldest first. report sums up a window (default the\n"
	  "last 30 days): per principal its entries, denials and distinct\n"
	  "consumers; datasets fetched per purpose; deletions, consent changes,\n"
	  "GPC and ADMT opt-outs; master key events; the chain's verification\n"
	  "with a signed checkpoint; and anomalies: a principal's day whose\n"
	  "distinct consumers or denials exceed N (--factor, default the\n"
	  "config's audit_anomaly_factor) times the mean of its 7 days before.\n"
	  "It exits 7 when it flags any.\n"
	  "\n"
	  "options of query:\n"
	  "  --since T, --until T\n"
	  "                   RFC 3339 (2026-12-01, 2026-12-01T10:00:00Z,\n"
	  "                   2026-12-01T12:00:00+02:00), a time back from now\n"
	  "                   (90s, 30m, 24h, 7d, 2w) or epoch milliseconds; a\n"
	  "                   date alone is 00:00 UTC that day; a time of day\n"
	  "                   needs Z or an offset. --since is inclusive,\n"
	  "                   --until exclusive\n"
	  "  --principal P    entries of principal P\n"
	  "  --consumer ID    entries about consumer ID\n"
	  "  --method M       a method: GetKeyStatus, Keys/GetKeyStatus or\n"
	  "                   /vault.v1.Keys/GetKeyStatus\n"
	  "  --limit N        stop after N entries (default 1000, with a note on\n"
	  "                   stderr when reached; 0: no limit)\n"
	  "\n"
	  "example:\n"
	  "  vaultctl audit query --since 24h --method DeleteConsumer --limit 50\n"
	  "  vaultctl audit report --since 30d --json\n" },
	{ "keys",
	  "usage: vaultctl keys status\n"
	  "       vaultctl keys rotate [VERSION]\n"
	  "       vaultctl keys destroy VERSION [--yes]\n"
	  "       vaultctl keys rekey CONSUMER\n"
	  "\n"
	  "status shows the master key versions; rotate makes a new version\n"
	  "active and rewraps every DEK under it (a progress bar on a terminal);\n"
	  "destroy erases a retired version for good: whatever only it can open\n"
	  "is gone (crypto-shredding). destroy asks to type the version on a\n"
	  "terminal, and refuses without --yes when stdin is not a terminal.\n"
	  "rekey gives one consumer a new DEK.\n"
	  "\n"
	  "options:\n"
	  "  --yes            destroy without asking\n"
	  "\n"
	  "example:\n"
	  "  vaultctl keys destroy 1\n" },
	{ "consent",
	  "usage: vaultctl consent CONSUMER [--purpose P (--grant|--deny)] [--source S]\n"
	  "           [--gpc] [--limit-sensitive|--unlimit-sensitive]\n"
	  "           [--opt-out-sale|--opt-in-sale] [--opt-out-admt|--opt-in-admt]\n"
	  "           [--legal-hold|--no-legal-hold]\n"
	  "\n"
	  "Records a consumer's consent to a purpose, and the sensitive-data,\n"
	  "sale/share and ADMT flags.\n"
	  "\n"
	  "options:\n"
	  "  --purpose P      the purpose (with --grant or --deny)\n"
	  "  --grant, --deny  the decision\n"
	  "  --source S       where it came from (default: api)\n"
	  "  --gpc            a Global Privacy Control signal (source gpc)\n"
	  "  --limit-sensitive, --unlimit-sensitive\n"
	  "  --opt-out-sale, --opt-in-sale\n"
	  "  --opt-out-admt, --opt-in-admt\n"
	  "                   out of (or back into) the purposes of automated\n"
	  "                   decisions with a significant effect (admt = true)\n"
	  "  --legal-hold, --no-legal-hold\n"
	  "                   a DROP list's match is exempted, not deleted\n"
	  "\n"
	  "example:\n"
	  "  vaultctl consent nina@example.com --purpose marketing --deny\n" },
	{ "features",
	  "usage: vaultctl features --purpose P --dataset D [--attributes A,B...]\n"
	  "           [--format csv|jsonl] [--batch-size N] [--page-token T]\n"
	  "           [--shard I/N]\n"
	  "\n"
	  "Streams pseudonymous feature rows for a dataset to stdout.\n"
	  "\n"
	  "options:\n"
	  "  --purpose P      the purpose of the use\n"
	  "  --dataset D      the dataset id (its pseudonyms are its own)\n"
	  "  --attributes L   the attributes, comma separated (default: all the\n"
	  "                   purpose allows)\n"
	  "  --format F       csv (default) or jsonl\n"
	  "  --batch-size N   rows per message\n"
	  "  --page-token T   resume where a broken stream stopped\n"
	  "  --shard I/N      only shard I of N (0 <= I < N <= 1024): the N\n"
	  "                   shards' rows together are the whole stream's\n"
	  "\n"
	  "example:\n"
	  "  vaultctl features --purpose analytics --dataset churn-2026 > rows.csv\n" },
};

void
ctl_help_globals(FILE *f)
{
	fprintf(f, "global options (before or after the command):\n"
	    "  --addr HOST:PORT   the vault (default $VAULT_ADDR, 127.0.0.1:50051)\n"
	    "  --token-file FILE  bearer token, first line ($VAULT_TOKEN_FILE)\n"
	    "  --ca FILE          CA certificate: use TLS ($VAULT_CA)\n"
	    "  --cert FILE --key FILE\n"
	    "                     client certificate for mTLS ($VAULT_CERT, $VAULT_KEY)\n"
	    "  --json             JSON output, errors as {\"error\": ...}\n"
	    "  --timeout MS       per-call deadline (default 10000)\n"
	    "  --help, --version\n"
	    "exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 invalid argument,\n"
	    "  5 unauthenticated or denied, 6 unavailable, 7 anomalies flagged\n"
	    "  (audit report)\n");
}

int
ctl_help(FILE *f, const char *command)
{
	for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
		if (strcmp(helps[i].name, command) == 0) {
			fputs(helps[i].text, f);
			fputc('\n', f);
			ctl_help_globals(f);
			return 0;
		}
	}
	return -1;
}
