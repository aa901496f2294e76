/* tls.c -- TLS over memory BIOs, for connections driven by the uv loop.
 *
 * Each aigw_tls_t owns one SSL and, through it, two memory BIOs: the read BIO
 * holds ciphertext fed from the socket, the write BIO collects ciphertext for
 * the socket. OpenSSL never sees a file descriptor, so no call here blocks and
 * the owner of the uv_tcp_t decides when bytes move.
 *
 * A context wraps an SSL_CTX together with what our callbacks need: the
 * server's ALPN list and the client's session cache. It is reference-counted:
 * every connection holds a reference, so a context dropped on a config reload
 * lives until its last pooled connection is freed. The session cache is the
 * only mutable state shared between threads and sits behind a mutex.
 *
 * Client contexts on the system CA store are shared by every target and
 * every worker: loading the store costs each SSL_CTX about 1.7 MB, which
 * the default config's three HTTPS providers paid once per worker. The
 * shared contexts are the one global here (a list under its own mutex); the
 * store they loaded stays while any target or connection holds one, so a
 * changed system store is read again after a restart. A context with its own
 * CA file is never shared (the file may change between reloads).
 *
 * OpenSSL's error queue is per thread: each entry point clears it first and
 * drains it after a failure, so one connection's error never surfaces as
 * another's. A fatal error is sticky: later calls on that connection return
 * the same code and leave the message in place. */
#include "base/tls.h"

#include "base/alloc.h"
#include "base/errors.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <uv.h>

#define SESSION_SLOTS 64
#define HOST_MAX 255             /* longest name SNI can carry */
#define BIO_KEEP_MAX (64 * 1024) /* idle BIO buffers above this are replaced */

typedef struct {
  char host[HOST_MAX + 1];
  SSL_SESSION *sess; /* one reference, owned by the slot */
} session_slot_t;

struct aigw_tls_ctx_s {
  SSL_CTX *ssl_ctx;
  atomic_int refs; /* the creator's plus one per connection */
  int server;
  int verify;
  unsigned char *alpn; /* server: wire-format preference list */
  unsigned int alpn_len;
  session_slot_t *sessions; /* client: SESSION_SLOTS, keyed by host */
  uv_mutex_t sessions_lock;
  int shared;           /* client on the system store: in shared_ctxs */
  aigw_tls_ctx_t *next; /* in shared_ctxs */
};

static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static aigw_tls_ctx_t *shared_ctxs; /* one per verify setting at most */

struct aigw_tls_s {
  aigw_tls_ctx_t *ctx;
  SSL *ssl;   /* owns both memory BIOs */
  char *host; /* client: as given, for sessions and errors */
  int fatal;  /* sticky error code, 0 while healthy */
  char err[256];
};

/* ---- helpers ---- */

static void put_err(char *err, size_t errlen, const char *what, const char *arg) {
  char ossl[160] = "";
  unsigned long e = ERR_peek_error();
  if (e != 0) ERR_error_string_n(e, ossl, sizeof ossl);
  ERR_clear_error();
  if (err == NULL || errlen == 0) return;
  snprintf(err, errlen, "%s%s%s%s%s", what, arg ? " " : "", arg ? arg : "", ossl[0] ? ": " : "",
           ossl);
}

/* "h2, http/1.1" -> "\x02h2\x08http/1.1". Returns 0, or -1 for an empty list
 * or a name that is empty or longer than 255 bytes. */
static int alpn_wire(const char *list, unsigned char **out, unsigned int *outlen) {
  size_t cap = strlen(list) + 1;
  if (cap > UINT_MAX) return -1;
  unsigned char *wire = aigw_malloc(cap);
  size_t n = 0;
  const char *p = list;
  for (;;) {
    const char *end = strchr(p, ',');
    if (end == NULL) end = p + strlen(p);
    const char *a = p, *b = end;
    while (a < b && (*a == ' ' || *a == '\t')) a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
    size_t len = (size_t)(b - a);
    if (len == 0 || len > 255) {
      aigw_free(wire);
      return -1;
    }
    wire[n++] = (unsigned char)len;
    memcpy(wire + n, a, len);
    n += len;
    if (*end == '\0') break;
    p = end + 1;
  }
  *out = wire;
  *outlen = (unsigned int)n;
  return 0;
}

static uint32_t host_hash(const char *s) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

/* ---- contexts ---- */

static aigw_tls_ctx_t *ctx_wrap(SSL_CTX *sc, int server, int verify) {
  aigw_tls_ctx_t *ctx = aigw_calloc(1, sizeof *ctx);
  ctx->ssl_ctx = sc;
  atomic_init(&ctx->refs, 1);
  ctx->server = server;
  ctx->verify = verify;
  return ctx;
}

static void ctx_release(aigw_tls_ctx_t *ctx) {
  if (ctx->shared) {
    /* Under the list's lock, so that a look-up never takes a context whose
     * last reference is going. */
    pthread_mutex_lock(&shared_mu);
    int last = atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) == 1;
    if (last) {
      aigw_tls_ctx_t **pp = &shared_ctxs;
      while (*pp != ctx) pp = &(*pp)->next;
      *pp = ctx->next;
    }
    pthread_mutex_unlock(&shared_mu);
    if (!last) return;
  } else if (atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) != 1) {
    return;
  }
  SSL_CTX_free(ctx->ssl_ctx);
  if (ctx->sessions != NULL) {
    for (int i = 0; i < SESSION_SLOTS; i++) SSL_SESSION_free(ctx->sessions[i].sess);
    aigw_free(ctx->sessions);
    uv_mutex_destroy(&ctx->sessions_lock);
  }
  aigw_free(ctx->alpn);
  aigw_free(ctx);
}

/* Client side: OpenSSL hands every new session (TLS 1.3 tickets arrive after
 * the handshake, inside SSL_read) to this callback; we keep the latest one per
 * host. Returning 1 keeps OpenSSL's reference. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess) {
  aigw_tls_t *t = SSL_get_app_data(ssl);
  if (t == NULL || t->host == NULL || t->ctx->sessions == NULL) return 0;
  aigw_tls_ctx_t *ctx = t->ctx;
  session_slot_t *slot = &ctx->sessions[host_hash(t->host) % SESSION_SLOTS];
  uv_mutex_lock(&ctx->sessions_lock);
  SSL_SESSION *old = slot->sess;
  slot->sess = sess;
  strcpy(slot->host, t->host); /* client_new bounds host to HOST_MAX */
  uv_mutex_unlock(&ctx->sessions_lock);
  SSL_SESSION_free(old);
  return 1;
}

static void session_resume(aigw_tls_t *t) {
  aigw_tls_ctx_t *ctx = t->ctx;
  session_slot_t *slot = &ctx->sessions[host_hash(t->host) % SESSION_SLOTS];
  uv_mutex_lock(&ctx->sessions_lock);
  if (slot->sess != NULL && strcmp(slot->host, t->host) == 0 &&
      SSL_SESSION_is_resumable(slot->sess))
    SSL_set_session(t->ssl, slot->sess); /* takes its own reference */
  uv_mutex_unlock(&ctx->sessions_lock);
}

static aigw_tls_ctx_t *client_ctx_create(const char *ca_file, int verify, char *err, size_t errlen);

aigw_tls_ctx_t *aigw_tls_client_ctx_new(const char *ca_file, int verify, char *err, size_t errlen) {
  if (ca_file != NULL && ca_file[0] == '\0') ca_file = NULL;
  if (ca_file != NULL) return client_ctx_create(ca_file, verify, err, errlen);
  verify = verify != 0;
  pthread_mutex_lock(&shared_mu);
  aigw_tls_ctx_t *ctx = shared_ctxs;
  while (ctx != NULL && ctx->verify != verify) ctx = ctx->next;
  if (ctx != NULL) {
    atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
  } else if ((ctx = client_ctx_create(NULL, verify, err, errlen)) != NULL) {
    ctx->shared = 1;
    ctx->next = shared_ctxs;
    shared_ctxs = ctx;
  }
  pthread_mutex_unlock(&shared_mu);
  return ctx;
}

static aigw_tls_ctx_t *client_ctx_create(const char *ca_file, int verify, char *err,
                                         size_t errlen) {
  ERR_clear_error();
  SSL_CTX *sc = SSL_CTX_new(TLS_client_method());
  if (sc == NULL) {
    put_err(err, errlen, "cannot create TLS client context", NULL);
    return NULL;
  }
  if (SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION) != 1) {
    put_err(err, errlen, "cannot set minimum TLS version", NULL);
    goto fail;
  }
  /* A renegotiation would make a write wait for a read; providers don't ask. */
  SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(sc, SSL_MODE_RELEASE_BUFFERS);

  if (verify) {
    if (ca_file != NULL) {
      /* Only this file: the per-provider CA replaces the system store. Any
       * certificate in it is a trust anchor, so an intermediate can be pinned
       * (curl does the same). */
      if (SSL_CTX_load_verify_file(sc, ca_file) != 1) {
        put_err(err, errlen, "cannot load CA file", ca_file);
        goto fail;
      }
      X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(sc), X509_V_FLAG_PARTIAL_CHAIN);
    } else if (SSL_CTX_set_default_verify_paths(sc) != 1) {
      put_err(err, errlen, "cannot load the system CA store", NULL);
      goto fail;
    }
    SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
  } else {
    SSL_CTX_set_verify(sc, SSL_VERIFY_NONE, NULL);
  }

  SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(sc, on_new_session);

  aigw_tls_ctx_t *ctx = ctx_wrap(sc, 0, verify != 0);
  if (uv_mutex_init(&ctx->sessions_lock) != 0) {
    put_err(err, errlen, "cannot create the TLS session cache lock", NULL);
    aigw_free(ctx);
    goto fail;
  }
  ctx->sessions = aigw_calloc(SESSION_SLOTS, sizeof *ctx->sessions);
  return ctx;

fail:
  SSL_CTX_free(sc);
  return NULL;
}

static int on_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg) {
  aigw_tls_ctx_t *ctx = arg;
  unsigned char *sel;
  unsigned char sel_len;
  if (inlen == 0) return SSL_TLSEXT_ERR_NOACK;
  /* Our list first: the server's preference wins. No overlap is fatal
   * (no_application_protocol), as RFC 7301 asks. */
  if (SSL_select_next_proto(&sel, &sel_len, ctx->alpn, ctx->alpn_len, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = sel;
  *outlen = sel_len;
  return SSL_TLSEXT_ERR_OK;
}

aigw_tls_ctx_t *aigw_tls_server_ctx_new(const char *cert_file, const char *key_file,
                                        const char *alpn, char *err, size_t errlen) {
  unsigned char *wire = NULL;
  unsigned int wire_len = 0;
  if (alpn != NULL && alpn_wire(alpn, &wire, &wire_len) != 0) {
    if (err != NULL && errlen > 0) snprintf(err, errlen, "invalid ALPN list \"%s\"", alpn);
    return NULL;
  }
  ERR_clear_error();
  SSL_CTX *sc = SSL_CTX_new(TLS_server_method());
  if (sc == NULL) {
    put_err(err, errlen, "cannot create TLS server context", NULL);
    aigw_free(wire);
    return NULL;
  }
  if (SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION) != 1) {
    put_err(err, errlen, "cannot set minimum TLS version", NULL);
    goto fail;
  }
  SSL_CTX_set_options(sc, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(sc, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_session_id_context(sc, (const unsigned char *)"aigw", 4);
  if (SSL_CTX_use_certificate_chain_file(sc, cert_file) != 1) {
    put_err(err, errlen, "cannot load certificate chain", cert_file);
    goto fail;
  }
  if (SSL_CTX_use_PrivateKey_file(sc, key_file, SSL_FILETYPE_PEM) != 1) {
    put_err(err, errlen, "cannot load private key", key_file);
    goto fail;
  }
  if (SSL_CTX_check_private_key(sc) != 1) {
    put_err(err, errlen, "private key does not match certificate", key_file);
    goto fail;
  }
  aigw_tls_ctx_t *ctx = ctx_wrap(sc, 1, 0);
  if (wire != NULL) {
    ctx->alpn = wire;
    ctx->alpn_len = wire_len;
    SSL_CTX_set_alpn_select_cb(sc, on_alpn_select, ctx);
  }
  return ctx;

fail:
  SSL_CTX_free(sc);
  aigw_free(wire);
  return NULL;
}

void aigw_tls_ctx_free(aigw_tls_ctx_t *ctx) {
  if (ctx != NULL) ctx_release(ctx);
}

/* ---- connections ---- */

static aigw_tls_t *conn_new(aigw_tls_ctx_t *ctx) {
  ERR_clear_error();
  SSL *ssl = SSL_new(ctx->ssl_ctx);
  BIO *rbio = BIO_new(BIO_s_mem());
  BIO *wbio = BIO_new(BIO_s_mem());
  if (ssl == NULL || rbio == NULL || wbio == NULL) {
    SSL_free(ssl);
    BIO_free(rbio);
    BIO_free(wbio);
    ERR_clear_error();
    return NULL;
  }
  BIO_set_mem_eof_return(rbio, -1); /* empty means "retry", not EOF */
  BIO_set_mem_eof_return(wbio, -1);
  SSL_set_bio(ssl, rbio, wbio);
  aigw_tls_t *t = aigw_calloc(1, sizeof *t);
  t->ssl = ssl;
  t->ctx = ctx;
  atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
  SSL_set_app_data(ssl, t);
  return t;
}

aigw_tls_t *aigw_tls_client_new(aigw_tls_ctx_t *ctx, const char *host, const char *alpn) {
  if (ctx == NULL || ctx->server) return NULL;
  /* "[::1]" as in a URL: the brackets are not part of the address. */
  size_t hostlen = host != NULL ? strlen(host) : 0;
  int bracketed = hostlen >= 2 && host[0] == '[' && host[hostlen - 1] == ']';
  if (bracketed) {
    host++;
    hostlen -= 2;
  }
  if (hostlen > HOST_MAX || (hostlen == 0 && ctx->verify)) return NULL;

  aigw_tls_t *t = conn_new(ctx);
  if (t == NULL) return NULL;
  SSL_set_connect_state(t->ssl);

  if (hostlen > 0) {
    t->host = aigw_strndup(host, hostlen);
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(t->host);
    if (ip != NULL) {
      /* IP literal: no SNI (RFC 6066), and the check is against iPAddress SANs. */
      ASN1_OCTET_STRING_free(ip);
      if (ctx->verify && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), t->host) != 1)
        goto fail;
    } else {
      if (bracketed) goto fail; /* only an IPv6 literal goes in brackets */
      if (SSL_set_tlsext_host_name(t->ssl, t->host) != 1) goto fail;
      if (ctx->verify) {
        if (SSL_set1_host(t->ssl, t->host) != 1) goto fail;
        SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      }
    }
  }

  if (alpn != NULL) {
    unsigned char *wire;
    unsigned int wire_len;
    if (alpn_wire(alpn, &wire, &wire_len) != 0) goto fail;
    int rc = SSL_set_alpn_protos(t->ssl, wire, wire_len); /* 0 is success here */
    aigw_free(wire);
    if (rc != 0) goto fail;
  }

  if (t->host != NULL) session_resume(t);
  ERR_clear_error();
  return t;

fail:
  ERR_clear_error();
  aigw_tls_free(t);
  return NULL;
}

aigw_tls_t *aigw_tls_server_new(aigw_tls_ctx_t *ctx) {
  if (ctx == NULL || !ctx->server) return NULL;
  aigw_tls_t *t = conn_new(ctx);
  if (t != NULL) SSL_set_accept_state(t->ssl);
  return t;
}

void aigw_tls_free(aigw_tls_t *t) {
  if (t == NULL) return;
  /* OpenSSL drops the session of a connection freed without close_notify,
   * which is how pooled connections usually end (HTTP framing, not TLS,
   * detects truncation). Keep it unless the connection failed. */
  if (!t->fatal && SSL_is_init_finished(t->ssl))
    SSL_set_shutdown(t->ssl, SSL_get_shutdown(t->ssl) | SSL_SENT_SHUTDOWN);
  SSL_free(t->ssl);
  aigw_free(t->host);
  ctx_release(t->ctx);
  aigw_free(t);
}

/* Records why the connection failed, makes the failure sticky, and empties
 * this thread's error queue. A failed peer verification is told apart from
 * every other TLS error. */
static int conn_fail(aigw_tls_t *t, int ssl_err) {
  long vr = SSL_get_verify_result(t->ssl);
  unsigned long e = ERR_peek_error();
  if (t->ctx->verify && vr != X509_V_OK) {
    const char *why = X509_verify_cert_error_string(vr);
    if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH)
      snprintf(t->err, sizeof t->err,
               "certificate verify failed: %s (the certificate is not valid for \"%s\")", why,
               t->host ? t->host : "");
    else snprintf(t->err, sizeof t->err, "certificate verify failed: %s", why);
    t->fatal = AIGW_ETLS_VERIFY;
  } else {
    if (e != 0) ERR_error_string_n(e, t->err, sizeof t->err);
    else snprintf(t->err, sizeof t->err, "tls error (SSL_get_error %d)", ssl_err);
    t->fatal = AIGW_ETLS;
  }
  ERR_clear_error();
  return t->fatal;
}

/* After a big write or read, a drained memory BIO keeps its buffer at its
 * high-water mark. Pooled connections idle for long, so swap such a BIO for
 * a fresh one. Only outside the handshake, when OpenSSL may stack a
 * buffering BIO on the write side. */
static void bio_trim(aigw_tls_t *t, int write_side) {
  if (!SSL_is_init_finished(t->ssl)) return;
  BIO *b = write_side ? SSL_get_wbio(t->ssl) : SSL_get_rbio(t->ssl);
  BUF_MEM *bm = NULL;
  if (BIO_ctrl_pending(b) != 0) return;
  BIO_get_mem_ptr(b, &bm);
  if (bm == NULL || bm->max <= BIO_KEEP_MAX) return;
  BIO *fresh = BIO_new(BIO_s_mem());
  if (fresh == NULL) {
    ERR_clear_error();
    return;
  }
  BIO_set_mem_eof_return(fresh, -1);
  if (write_side) SSL_set0_wbio(t->ssl, fresh); /* frees the old one */
  else SSL_set0_rbio(t->ssl, fresh);
}

int aigw_tls_handshake(aigw_tls_t *t) {
  if (t->fatal) return t->fatal;
  if (SSL_is_init_finished(t->ssl)) return 0;
  ERR_clear_error();
  int r = SSL_do_handshake(t->ssl);
  if (r == 1) return 0;
  int e = SSL_get_error(t->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return AIGW_TLS_WANT_IO;
  return conn_fail(t, e);
}

int aigw_tls_handshake_done(const aigw_tls_t *t) {
  return t->fatal == 0 && SSL_is_init_finished(t->ssl);
}

int aigw_tls_feed(aigw_tls_t *t, const char *data, size_t len) {
  BIO *rbio = SSL_get_rbio(t->ssl);
  while (len > 0) {
    int chunk = len > INT_MAX ? INT_MAX : (int)len;
    int n = BIO_write(rbio, data, chunk);
    if (n <= 0) {
      ERR_clear_error();
      return AIGW_ENOMEM_REQ;
    }
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

int aigw_tls_read(aigw_tls_t *t, char *buf, size_t cap) {
  if (t->fatal) return t->fatal;
  if (cap == 0) return 0;
  if (cap > INT_MAX) cap = INT_MAX;
  ERR_clear_error();
  size_t n = 0;
  if (SSL_read_ex(t->ssl, buf, cap, &n) == 1) return (int)n;
  int e = SSL_get_error(t->ssl, 0);
  switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE: bio_trim(t, 0); return 0;
    case SSL_ERROR_ZERO_RETURN: ERR_clear_error(); return AIGW_EUPSTREAM_CLOSED;
    default: return conn_fail(t, e);
  }
}

int aigw_tls_write(aigw_tls_t *t, const char *data, size_t len) {
  if (t->fatal) return t->fatal;
  if (!SSL_is_init_finished(t->ssl)) {
    snprintf(t->err, sizeof t->err, "write before the TLS handshake completed");
    return AIGW_ETLS;
  }
  ERR_clear_error();
  /* Without SSL_MODE_ENABLE_PARTIAL_WRITE, one SSL_write_ex takes all of it
   * (a memory BIO never pushes back); the loop is for safety. */
  while (len > 0) {
    size_t n = 0;
    if (SSL_write_ex(t->ssl, data, len, &n) != 1) return conn_fail(t, SSL_get_error(t->ssl, 0));
    data += n;
    len -= n;
  }
  return 0;
}

int aigw_tls_shutdown(aigw_tls_t *t) {
  if (t->fatal) return t->fatal;
  if (!SSL_is_init_finished(t->ssl) || (SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN)) return 0;
  ERR_clear_error();
  int r = SSL_shutdown(t->ssl);
  if (r >= 0) return 0;
  int e = SSL_get_error(t->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    ERR_clear_error();
    return 0;
  }
  return conn_fail(t, e);
}

char *aigw_tls_take_output(aigw_tls_t *t, size_t *len) {
  BIO *wbio = SSL_get_wbio(t->ssl);
  size_t pending = BIO_ctrl_pending(wbio);
  *len = 0;
  if (pending == 0) return NULL;
  char *buf = aigw_try_malloc(pending);
  if (buf == NULL) {
    *len = pending; /* still queued: try again later */
    return NULL;
  }
  size_t got = 0;
  while (got < pending) {
    size_t chunk = pending - got;
    int n = BIO_read(wbio, buf + got, chunk > INT_MAX ? INT_MAX : (int)chunk);
    if (n <= 0) break; /* cannot happen while bytes are pending */
    got += (size_t)n;
  }
  if (got == 0) {
    aigw_free(buf);
    return NULL;
  }
  bio_trim(t, 1);
  *len = got;
  return buf;
}

const char *aigw_tls_last_error(const aigw_tls_t *t) { return t->err; }

const char *aigw_tls_alpn_selected(const aigw_tls_t *t, size_t *len) {
  const unsigned char *p = NULL;
  unsigned int n = 0;
  SSL_get0_alpn_selected(t->ssl, &p, &n);
  if (len != NULL) *len = n;
  return n > 0 ? (const char *)p : NULL;
}

int aigw_tls_session_reused(const aigw_tls_t *t) { return SSL_session_reused(t->ssl) == 1; }

int aigw_tls_buffered(const aigw_tls_t *t) {
  return SSL_pending(t->ssl) > 0 || BIO_ctrl_pending(SSL_get_rbio(t->ssl)) > 0;
}
