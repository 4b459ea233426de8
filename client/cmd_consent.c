#include <getopt.h>
#include <stdio.h>

#include <jansson.h>

#include "vault/v1/vault.pb-c.h"
#include "vaultctl.h"

#define USAGE "consent CONSUMER [--purpose P (--grant|--deny)] [--source S] " \
	"[--gpc] [--limit-sensitive|--unlimit-sensitive] [--opt-out-sale|--opt-in-sale] " \
	"[--opt-out-admt|--opt-in-admt] [--legal-hold|--no-legal-hold]"

int
cmd_consent(struct ctl *ctl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "purpose", required_argument, NULL, 'p' },
		{ "grant", no_argument, NULL, 'g' },
		{ "deny", no_argument, NULL, 'd' },
		{ "source", required_argument, NULL, 's' },
		{ "gpc", no_argument, NULL, 'G' },
		{ "limit-sensitive", no_argument, NULL, 'l' },
		{ "unlimit-sensitive", no_argument, NULL, 'L' },
		{ "opt-out-sale", no_argument, NULL, 'o' },
		{ "opt-in-sale", no_argument, NULL, 'O' },
		{ "opt-out-admt", no_argument, NULL, 'a' },
		{ "opt-in-admt", no_argument, NULL, 'A' },
		{ "legal-hold", no_argument, NULL, 'h' },
		{ "no-legal-hold", no_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 },
	};
	Vault__V1__SetConsentRequest req = VAULT__V1__SET_CONSENT_REQUEST__INIT;
	Vault__V1__SetConsentResponse *resp = NULL;
	struct vc_status st;
	int ch, decided = 0, limits = 0, sales = 0, admts = 0, holds = 0;

	req.source = "api";
	optind = 0;
	while ((ch = ctl_getopt(argc, argv, longopts)) != -1) {
		switch (ch) {
		case 'p': req.purpose = optarg; break;
		case 'g': req.granted = 1; decided++; break;
		case 'd': req.granted = 0; decided++; break;
		case 's': req.source = optarg; break;
		case 'G': req.source = "gpc"; break;
		case 'l': req.limit_sensitive = VAULT__V1__FLAG_CHANGE__FLAG_SET;
			limits++; break;
		case 'L': req.limit_sensitive = VAULT__V1__FLAG_CHANGE__FLAG_CLEAR;
			limits++; break;
		case 'o': req.opt_out_sale_share = VAULT__V1__FLAG_CHANGE__FLAG_SET;
			sales++; break;
		case 'O': req.opt_out_sale_share = VAULT__V1__FLAG_CHANGE__FLAG_CLEAR;
			sales++; break;
		case 'a': req.opt_out_admt = VAULT__V1__FLAG_CHANGE__FLAG_SET;
			admts++; break;
		case 'A': req.opt_out_admt = VAULT__V1__FLAG_CHANGE__FLAG_CLEAR;
			admts++; break;
		case 'h': req.legal_hold = VAULT__V1__FLAG_CHANGE__FLAG_SET;
			holds++; break;
		case 'H': req.legal_hold = VAULT__V1__FLAG_CHANGE__FLAG_CLEAR;
			holds++; break;
		default: return ctl_usage(USAGE);
		}
	}
	/* One way each: the last of two opposite flags must not win silently. */
	if (limits > 1 || sales > 1 || decided > 1 || admts > 1 || holds > 1) {
		fprintf(stderr, "vaultctl consent: give at most one of %s\n",
		    decided > 1 ? "--grant and --deny" : limits > 1 ?
		    "--limit-sensitive and --unlimit-sensitive" : sales > 1 ?
		    "--opt-out-sale and --opt-in-sale" : admts > 1 ?
		    "--opt-out-admt and --opt-in-admt" :
		    "--legal-hold and --no-legal-hold");
		return ctl_usage(USAGE);
	}
	if (optind != argc - 1 || (req.purpose[0] != '\0') != (decided == 1))
		return ctl_usage(USAGE);
	req.consumer_id = argv[optind];
	if (vc_unary(ctl->vc, "/vault.v1.Consumers/SetConsent", &req.base,
	    &vault__v1__set_consent_response__descriptor,
	    (ProtobufCMessage **)&resp, &st, ctl->timeout_ms) != 0)
		return ctl_fail(ctl, &st);
	if (ctl->json) {
		json_t *o = json_pack("{s:s,s:b,s:b,s:b,s:b,s:b}", "consumer_ref",
		    resp->consumer_ref, "limit_sensitive", resp->limit_sensitive,
		    "opt_out_sale_share", resp->opt_out_sale_share,
		    "opt_out_admt", resp->opt_out_admt, "legal_hold",
		    resp->legal_hold, "created", resp->created);

		json_dumpf(o, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(o);
	} else {
		printf("ok consumer_ref=%s limit_sensitive=%s opt_out_sale_share=%s"
		    " opt_out_admt=%s legal_hold=%s%s\n", resp->consumer_ref,
		    resp->limit_sensitive ? "true" : "false",
		    resp->opt_out_sale_share ? "true" : "false",
		    resp->opt_out_admt ? "true" : "false",
		    resp->legal_hold ? "true" : "false",
		    resp->created ? " created=true" : "");
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return CTL_OK;
}
