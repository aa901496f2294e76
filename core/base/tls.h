/* tls.h -- TLS over memory BIOs, for connections driven by the uv loop.
 *
 * OpenSSL never touches a socket here: the owner of the uv_tcp_t feeds the
 * ciphertext it reads with aigw_tls_feed(), drives aigw_tls_handshake() until
 * it returns 0, then reads plaintext with aigw_tls_read() and writes it with
 * aigw_tls_write(); after every one of those calls (and aigw_tls_shutdown())
 * it sends whatever aigw_tls_take_output() hands back. All calls are
 * non-blocking. A connection is used from one thread at a time; a context
 * may be shared by all threads. */
#ifndef AIGW_TLS_H
#define AIGW_TLS_H

#include <stddef.h>

typedef struct aigw_tls_ctx_s aigw_tls_ctx_t;
typedef struct aigw_tls_s aigw_tls_t;

/* A client context: TLS 1.2 or newer. Peers are verified against ca_file
 * when given (only that file: a per-provider CA replaces the system store,
 * and every certificate in it is a trust anchor), else against the system's
 * default store (SSL_CERT_FILE / SSL_CERT_DIR override it). verify=0 turns
 * verification off (for tests and explicit operator opt-out only). Sessions
 * are cached per host for resumption. Returns NULL with a message in err
 * (errlen bytes, always NUL-terminated). Safe to share across threads once
 * created. */
aigw_tls_ctx_t *aigw_tls_client_ctx_new(const char *ca_file, int verify, char *err, size_t errlen);
/* A server context from PEM files (cert_file: leaf first, then its chain);
 * TLS 1.2 or newer. alpn is a comma list in preference order ("h2,http/1.1")
 * or NULL; a client offering none of them is refused. */
aigw_tls_ctx_t *aigw_tls_server_ctx_new(const char *cert_file, const char *key_file,
                                        const char *alpn, char *err, size_t errlen);
/* Drops the creator's reference: connections made from ctx keep it alive
 * until they are freed, so a reload may free the old context at once.
 * NULL is a no-op. */
void aigw_tls_ctx_free(aigw_tls_ctx_t *ctx);

/* A client connection that sends SNI `host` (unless it is an IP literal) and,
 * when the context verifies, checks the certificate against `host` (DNS name,
 * or IP literal against iPAddress SANs; an IPv6 literal may be bracketed).
 * alpn is a comma list or NULL. A cached session for `host` is offered.
 * Returns NULL on allocation failure, a server context, an invalid alpn list,
 * or a host that is unusable (longer than 255 bytes, or NULL/empty while the
 * context verifies). */
aigw_tls_t *aigw_tls_client_new(aigw_tls_ctx_t *ctx, const char *host, const char *alpn);
aigw_tls_t *aigw_tls_server_new(aigw_tls_ctx_t *ctx);
/* Frees the connection and its buffered bytes; sends nothing. NULL is a no-op. */
void aigw_tls_free(aigw_tls_t *t);

/* Drives the handshake: 0 when complete, AIGW_TLS_WANT_IO (>0) while it needs
 * more ciphertext from the peer, or a negative AIGW_ETLS / AIGW_ETLS_VERIFY
 * (the peer's certificate failed verification). Errors are sticky: every
 * later call on t returns the same code. Send the output after a failure
 * too: it carries the alert. */
#define AIGW_TLS_WANT_IO 1
int aigw_tls_handshake(aigw_tls_t *t);
int aigw_tls_handshake_done(const aigw_tls_t *t);

/* Ciphertext received from the socket. Returns 0 or AIGW_ENOMEM_REQ. */
int aigw_tls_feed(aigw_tls_t *t, const char *data, size_t len);

/* Plaintext into buf: >0 bytes read (at most one record; call again until
 * 0); 0 when nothing is available yet (feed more); AIGW_EUPSTREAM_CLOSED on a
 * clean close_notify (again on every later call); AIGW_ETLS. Reading also
 * consumes post-handshake messages (TLS 1.3 session tickets, key updates),
 * which may queue output. */
int aigw_tls_read(aigw_tls_t *t, char *buf, size_t cap);

/* Encrypts all of data (buffered inside OpenSSL's BIO until taken).
 * Returns 0 or a negative code. Only after the handshake is done: before it,
 * AIGW_ETLS (which, unlike a TLS failure, leaves the connection usable). */
int aigw_tls_write(aigw_tls_t *t, const char *data, size_t len);

/* Queues a close_notify for the peer (take the output and send it). A no-op
 * before the handshake completes or when already sent. Returns 0 or a
 * negative code. */
int aigw_tls_shutdown(aigw_tls_t *t);

/* Ciphertext waiting to go to the socket: returns a buffer the caller now
 * owns (free with aigw_free) and its length, or NULL with *len 0 when there is
 * none. Out of memory gives NULL with *len > 0: the bytes stay queued. */
char *aigw_tls_take_output(aigw_tls_t *t, size_t *len);

/* After an error: a short description owned by t ("" before any), e.g.
 * "certificate verify failed: unable to get local issuer certificate". */
const char *aigw_tls_last_error(const aigw_tls_t *t);
/* The negotiated ALPN protocol (owned by t, NOT NUL-terminated: use *len),
 * or NULL with *len 0. len may be NULL. */
const char *aigw_tls_alpn_selected(const aigw_tls_t *t, size_t *len);
/* 1 when the handshake resumed a cached session (for debug logs and tests). */
int aigw_tls_session_reused(const aigw_tls_t *t);

/* 1 when received data is still inside OpenSSL (fed ciphertext not yet
 * decrypted, or decrypted bytes not yet read): such a connection is not
 * between messages and must not be reused. */
int aigw_tls_buffered(const aigw_tls_t *t);

#endif
