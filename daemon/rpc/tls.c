/*
 * TLS: the server credentials (mTLS when a certificate is configured), and
 * the certificate files read again on the first handshake after a reload.
 */
#include <errno.h>
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
	FILE *f;
	struct stat sb;
	char *buf;
	size_t n;

	errno = 0;
	f = fopen(path, "r");
	if (f == NULL || fstat(fileno(f), &sb) != 0 || sb.st_size > (1 << 20)) {
		log_error("cannot read %s: %s", path, f == NULL || errno != 0 ?
		    strerror(errno) : "larger than 1 MiB");
		if (f != NULL)
			fclose(f);
		return NULL;
	}
	if (secret && (sb.st_mode & 077) != 0) {
		log_error("TLS private key %s has mode %04o; it must be 0600 or "
		    "stricter (chmod 600 %s)", path, (unsigned)(sb.st_mode & 07777),
		    path);
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

/*
 * Reads every file once before the port opens, so that a file the first
 * handshake could not load stops the start with its own reason (which
 * file, and why) instead of a bare "cannot listen".
 */
static bool
files_usable(const char *cert, const char *key, const char *client_ca)
{
	char *c, *k, *ca;
	bool ok;

	c = read_pem(cert, false);
	k = read_pem(key, true);
	ca = read_pem(client_ca, false);
	ok = c != NULL && k != NULL && ca != NULL;
	if (k != NULL)
		sodium_memzero(k, strlen(k));
	free(k);
	free(c);
	free(ca);
	return ok;
}

grpc_server_credentials *
tls_credentials(struct server *srv, const char *cert, const char *key,
    const char *client_ca, bool require_client_cert)
{
	grpc_ssl_server_credentials_options *o;

	if (cert == NULL)
		return grpc_insecure_server_credentials_create();
	if (!files_usable(cert, key, client_ca))
		return NULL;
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
