/* tls.h -- TLS over memory BIOs, for connections driven by the uv loop.
 *
 * OpenSSL never touches a socket here: the owner of the uv_tcp_t feeds the
 * ciphertext it reads with aigw_tls_feed(), reads plaintext with
 * aigw_tls_read(), writes plaintext with aigw_tls_write(), and after each of
 * those sends whatever aigw_tls_take_output() hands back. All calls are
 * non-blocking and used from one thread at a time. */
#ifndef AIGW_TLS_H
#define AIGW_TLS_H

#include <stddef.h>

typedef struct aigw_tls_ctx_s aigw_tls_ctx_t;
typedef struct aigw_tls_s aigw_tls_t;

/* A client context. Peers are verified against ca_file when given, else the
 * system's default CA store. verify=0 turns verification off (for tests and
 * explicit operator opt-out only). Returns NULL with a message in err
 * (errlen bytes, always NUL-terminated). Safe to share across threads once
 * created. */
aigw_tls_ctx_t *aigw_tls_client_ctx_new(const char *ca_file, int verify,
                                        char *err, size_t errlen);
/* A server context from PEM files; alpn is a comma list ("http/1.1") or NULL. */
aigw_tls_ctx_t *aigw_tls_server_ctx_new(const char *cert_file, const char *key_file,
                                        const char *alpn, char *err, size_t errlen);
void aigw_tls_ctx_free(aigw_tls_ctx_t *ctx);

/* A client connection that sends SNI `host` (unless it is an IP literal) and,
 * when the context verifies, checks the certificate against `host`.
 * alpn may be NULL. Returns NULL on allocation failure. */
aigw_tls_t *aigw_tls_client_new(aigw_tls_ctx_t *ctx, const char *host, const char *alpn);
aigw_tls_t *aigw_tls_server_new(aigw_tls_ctx_t *ctx);
void aigw_tls_free(aigw_tls_t *t);

/* Drives the handshake: 0 when complete, AIGW_TLS_WANT_IO (>0) while it needs
 * more ciphertext from the peer, or a negative AIGW_ETLS / AIGW_ETLS_VERIFY. */
#define AIGW_TLS_WANT_IO 1
int aigw_tls_handshake(aigw_tls_t *t);
int aigw_tls_handshake_done(const aigw_tls_t *t);

/* Ciphertext received from the socket. Returns 0 or AIGW_ENOMEM_REQ. */
int aigw_tls_feed(aigw_tls_t *t, const char *data, size_t len);

/* Plaintext into buf: >0 bytes read; 0 when nothing is available yet
 * (feed more); AIGW_EUPSTREAM_CLOSED on a clean close_notify; AIGW_ETLS. */
int aigw_tls_read(aigw_tls_t *t, char *buf, size_t cap);

/* Encrypts all of data (buffered inside OpenSSL's BIO until taken).
 * Returns 0 or a negative code. Only after the handshake is done. */
int aigw_tls_write(aigw_tls_t *t, const char *data, size_t len);

/* Ciphertext waiting to go to the socket: returns a buffer the caller now
 * owns (free with aigw_free) and its length, or NULL/0 when there is none. */
char *aigw_tls_take_output(aigw_tls_t *t, size_t *len);

/* After an error: a short description (static or owned by t), e.g.
 * "certificate verify failed: unable to get local issuer certificate". */
const char *aigw_tls_last_error(const aigw_tls_t *t);
/* The ALPN protocol the peer chose, or NULL. */
const char *aigw_tls_alpn_selected(const aigw_tls_t *t, size_t *len);

#endif
