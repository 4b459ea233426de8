#include <string.h>

#include "api/handlers.h"
#include "engine/vault.h"
#include "grpc/health/v1/health.pb-c.h"

#define WATCH_POLL_MS 250

/* "" is the whole server; otherwise a service this server serves. */
static bool
known_service(const char *name)
{
	size_t n = strlen(name);

	if (n == 0)
		return true;
	for (size_t i = 0; i < dispatch_n_methods; i++) {
		const char *path = dispatch_methods[i].path;

		if (strncmp(path + 1, name, n) == 0 && path[n + 1] == '/')
			return true;
	}
	return false;
}

/* The service of the ordinary writes (PutAttributes, SetConsent). */
#define WRITE_SERVICE "vault.v1.Consumers"

/*
 * Every service, and the server as a whole (""), is NOT_SERVING while
 * stopping, on a broken audit chain (audit_broken = "not_serving"), and
 * once a fatal store error has marked the store failed (every call then
 * fails fast: store.h). While the store only refuses ordinary writes (full
 * map or disk, store.h), the write service is NOT_SERVING, so that a load
 * balancer stops sending writes; "" and the other services stay SERVING:
 * reads, exports, deletions and opt-outs go on in the headroom. Each
 * answer is computed when asked, so it comes back to SERVING as soon as
 * the cause is gone (space freed: the janitor's re-check, within a second).
 */
static Grpc__Health__V1__HealthCheckResponse__ServingStatus
status_of(struct rpc_ctx *ctx, const char *service)
{
	const struct vault *v = rpc_app(ctx);

	if (!known_service(service))
		return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
	return rpc_stopping(ctx) || v->audit.broken || store_failed(v->store) ||
	    (strcmp(service, WRITE_SERVICE) == 0 &&
	    store_refusing(v->store) != 0) ?
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING :
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
}

int
handle_health_check(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Grpc__Health__V1__HealthCheckRequest *req = (const void *)msg;
	Grpc__Health__V1__HealthCheckResponse resp =
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

	if (!known_service(req->service))
		return rpc_fail(ctx, VAULT_ERR_NOT_FOUND, "unknown service");
	resp.status = status_of(ctx, req->service);
	return rpc_reply(ctx, &resp.base);
}

/* Sends the status now and again whenever it changes, until cancelled. */
int
handle_health_watch(struct rpc_ctx *ctx, const ProtobufCMessage *msg)
{
	const Grpc__Health__V1__HealthCheckRequest *req = (const void *)msg;
	Grpc__Health__V1__HealthCheckResponse resp =
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	int r;

	resp.status = status_of(ctx, req->service);
	if ((r = rpc_send(ctx, &resp.base)) != 0)
		return r;
	while (!rpc_cancelled(ctx)) {
		if (status_of(ctx, req->service) != resp.status) {
			resp.status = status_of(ctx, req->service);
			if ((r = rpc_send(ctx, &resp.base)) != 0)
				return r;
		}
		if (rpc_stopping(ctx))
			return 0;
		rpc_wait(ctx, WATCH_POLL_MS);
	}
	return VAULT_ERR_CANCELLED;
}
