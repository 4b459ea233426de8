/*
 * TLS: the server credentials (mTLS when a certificate is configured), and
 * the certificate files read again on the first handshake after a reload.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <sodium.h>

#include "rpc/internal.h"
#include "rpc/tls.h"
#include "util/log.h"

/* Reads a whole PEM file; NULL (logged) when it cannot. */
static char *
read_pem(const char *path, bool secret)
{
	FILE *f = fopen(path, "r");
	struct stat sb;
	char *buf;
	size_t n;

	if (f == NULL || fstat(fileno(f), &sb) != 0 || sb.st_size > (1 << 20)) {
		log_error("cannot read %s", path);
		if (f != NULL)
			fclose(f);
		return NULL;
	}
	if (secret && (sb.st_mode & 077) != 0) {
		log_error("%s has mode %03o; a private key must be 0600 or stricter",
		    path, (unsigned)(sb.st_mode & 0777));
		fclose(f);
		return NULL;
	}
	buf = malloc((size_t)sb.st_size + 1);
	n = buf != NULL ? fread(buf, 1, (size_t)sb.st_size, f) : 0;
	fclose(f);
	if (buf != NULL)
		buf[n] = '\0';
	return buf;
}

/*
 * gRPC asks this on every handshake; after server_reload it hands over the
 * certificate files read anew. A file that fails keeps the old ones.
 */
static grpc_ssl_certificate_config_reload_status
fetch_certs(void *arg, grpc_ssl_server_certificate_config **config)
{
	struct server *srv = arg;
	grpc_ssl_pem_key_cert_pair pair;
	char *cert, *key, *ca;

	if (!atomic_exchange(&srv->tls_reload, false))
		return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
	cert = read_pem(srv->tls_cert, false);
	key = read_pem(srv->tls_key, true);
	ca = read_pem(srv->tls_ca, false);
	if (cert == NULL || key == NULL || ca == NULL) {
		free(cert);
		if (key != NULL)
			sodium_memzero(key, strlen(key));
		free(key);
		free(ca);
		log_error("TLS certificates not (re)loaded; the previous ones stay");
		return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
	}
	pair.private_key = key;
	pair.cert_chain = cert;
	*config = grpc_ssl_server_certificate_config_create(ca, &pair, 1);
	sodium_memzero(key, strlen(key));
	free(key);
	free(cert);
	free(ca);
	log_info("TLS certificates loaded");
	return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
}

grpc_server_credentials *
tls_credentials(struct server *srv, const char *cert, const char *key,
    const char *client_ca, bool require_client_cert)
{
	grpc_ssl_server_credentials_options *o;

	if (cert == NULL)
		return grpc_insecure_server_credentials_create();
	srv->tls = true;
	srv->tls_cert = strdup(cert);
	srv->tls_key = strdup(key);
	srv->tls_ca = strdup(client_ca);
	atomic_store(&srv->tls_reload, true);
	o = grpc_ssl_server_credentials_create_options_using_config_fetcher(
	    require_client_cert ?
	    GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY :
	    GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY, fetch_certs, srv);
	return grpc_ssl_server_credentials_create_with_options(o);
}
