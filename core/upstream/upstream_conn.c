/* upstream_conn.c -- an exchange's connection: the DNS lookup, the TCP
 * connect, the TLS handshake over memory BIOs (tls.h), and the writes of
 * the request. libuv requests (connect, write) are heap-allocated and
 * point at the connection, never at the exchange, so an aborted exchange
 * can be freed while they are queued (see upstream.c). */
#include <stdio.h>

#include "base/alloc.h"
#include "base/errors.h"
#include "upstream/upstream_int.h"

typedef struct {
  uv_write_t wr;
  aigw_upconn_t *uc;
  char *owned;
} up_write_t;

typedef struct {
  uv_connect_t req;
  aigw_upconn_t *uc;
} up_connect_t;

/* --- writing to the upstream --- */

static void on_up_write(uv_write_t *wr, int status) {
  up_write_t *w = (up_write_t *)wr;
  aigw_upconn_t *uc = w->uc;
  aigw_free(w->owned);
  aigw_free(w);
  uc->writes--;
  if (status < 0 && uc->user) {
    aigw_upstream_t *u = uc->user;
    if (!u->got_bytes && u->reused && !u->retried && aigw__up_safe_to_retry(u))
      return; /* the read side retries */
    aigw__up_fail(u, 502, "bad_gateway", "upstream write failed", "write failed");
  }
}

static int up_write(aigw_upstream_t *u, const uv_buf_t *bufs, unsigned n, char *owned) {
  /* Nothing queued: the bytes go out now if the socket takes them (a write
   * request that completes at once still costs libuv an epoll_ctl). What
   * the socket does not take, or an error, goes the queued way: its
   * callback reports a failure as before (a reused connection's retry). */
  uv_buf_t rest[2];
  if (u->uc->writes == 0 && n <= 2) {
    int sent = uv_try_write((uv_stream_t *)&u->uc->tcp, bufs, n);
    size_t total = 0;
    for (unsigned i = 0; i < n; i++) total += bufs[i].len;
    if (sent > 0 && (size_t)sent == total) {
      aigw_free(owned);
      return 0;
    }
    if (sent > 0) {
      unsigned k = 0;
      size_t skip = (size_t)sent;
      for (unsigned i = 0; i < n; i++) {
        if (skip >= bufs[i].len) {
          skip -= bufs[i].len;
          continue;
        }
        rest[k++] = uv_buf_init(bufs[i].base + skip, (unsigned)(bufs[i].len - skip));
        skip = 0;
      }
      bufs = rest;
      n = k;
    }
  }
  up_write_t *w = aigw_try_malloc(sizeof *w);
  if (w == NULL) {
    aigw_free(owned);
    return AIGW_ENOMEM_REQ;
  }
  w->uc = u->uc;
  w->owned = owned;
  int rc = uv_write(&w->wr, (uv_stream_t *)&u->uc->tcp, bufs, n, on_up_write);
  if (rc < 0) {
    aigw_free(owned);
    aigw_free(w);
    return rc;
  }
  u->uc->writes++;
  return 0;
}

/* Sends whatever ciphertext TLS has produced. */
int aigw__up_tls_flush(aigw_upstream_t *u) {
  size_t len;
  char *out;
  while ((out = aigw_tls_take_output(u->uc->tls, &len)) != NULL) {
    uv_buf_t b = uv_buf_init(out, (unsigned)len);
    int rc = up_write(u, &b, 1, out);
    if (rc < 0) return rc;
  }
  return 0;
}

void aigw__up_send_request(aigw_upstream_t *u) {
  u->state = ST_WAIT;
  int rc;
  if (u->uc->tls) {
    rc = aigw_tls_write(u->uc->tls, u->head.data, u->head.len);
    if (rc == 0 && u->blen) rc = aigw_tls_write(u->uc->tls, u->body, u->blen);
    if (rc == 0) rc = aigw__up_tls_flush(u);
  } else {
    uv_buf_t b[2] = {uv_buf_init(u->head.data, (unsigned)u->head.len),
                     uv_buf_init((char *)u->body, (unsigned)u->blen)};
    rc = up_write(u, b, u->blen ? 2 : 1, NULL);
  }
  if (rc < 0) {
    aigw__up_fail(u, 502, "bad_gateway", "upstream write failed", "write failed");
    return;
  }
  u->uc->requests++;
  aigw__up_arm(u, u->read_ms);
}

/* --- connecting --- */

void aigw__up_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  aigw_upconn_t *uc = h->data;
  aigw_upstream_t *u = uc->user;
  if (u == NULL) {
    /* Idle in the pool: anything read is discarded and ends the connection. */
    static _Thread_local char sink[64];
    buf->base = sink;
    buf->len = sizeof sink;
    return;
  }
  char **slot = uc->tls ? &u->cbuf : &u->rbuf;
  if (*slot == NULL) *slot = aigw_rbuf_get(u->loop);
  buf->base = *slot;
  buf->len = AIGW_RBUF_SIZE;
}

static void tls_start(aigw_upstream_t *u) {
  u->state = ST_HANDSHAKE;
  u->uc->tls = aigw_tls_client_new(u->t->tls_ctx, u->t->host, "http/1.1");
  if (u->uc->tls == NULL) {
    aigw__up_fail(u, 502, "bad_gateway", "tls: cannot create a connection",
                  "tls: cannot create a connection");
    return;
  }
  int rc = aigw_tls_handshake(u->uc->tls);
  if (rc < 0 || aigw__up_tls_flush(u) < 0) {
    aigw__up_fail(u, 502, "bad_gateway", "tls handshake failed", "tls: handshake failed");
    return;
  }
}

static void on_connect(uv_connect_t *req, int status) {
  up_connect_t *cr = (up_connect_t *)req;
  aigw_upconn_t *uc = cr->uc;
  aigw_free(cr);
  aigw_upstream_t *u = uc->user;
  if (u == NULL) return; /* aborted; the connection is already closing */
  if (status < 0) {
    char msg[160];
    snprintf(msg, sizeof msg, "upstream connect failed: %s", uv_strerror(status));
    aigw__up_fail(u, 502, "upstream_connect_failed", msg, msg + 9);
    return;
  }
  uv_tcp_nodelay(&uc->tcp, 1);
  start_read(uc);
  if (u->t->tls) tls_start(u);
  else aigw__up_send_request(u);
}

static void on_resolved(void *data, int status, const struct sockaddr *addr) {
  aigw_upstream_t *u = data;
  u->dnsq = NULL;
  if (status < 0) {
    char msg[300], why[300];
    snprintf(msg, sizeof msg, "cannot resolve upstream host %s", u->t->host);
    snprintf(why, sizeof why, "dns: cannot resolve %s", u->t->host);
    aigw__up_fail(u, 502, "upstream_dns_failed", msg, why);
    return;
  }
  u->state = ST_CONNECT;
  u->uc = aigw_upconn_new(u->loop->pool, u->t->pool_key);
  u->uc->user = u;
  up_connect_t *cr = aigw_try_malloc(sizeof *cr);
  if (cr == NULL) {
    aigw__up_fail(u, 503, "no_memory", "no memory", "no memory");
    return;
  }
  cr->uc = u->uc;
  int rc = uv_tcp_connect(&cr->req, &u->uc->tcp, addr, on_connect);
  if (rc < 0) {
    aigw_free(cr);
    char msg[160];
    snprintf(msg, sizeof msg, "upstream connect failed: %s", uv_strerror(rc));
    aigw__up_fail(u, 502, "upstream_connect_failed", msg, msg + 9);
    return;
  }
  aigw__up_arm(u, u->connect_ms);
}

void aigw__up_start_connect(aigw_upstream_t *u) {
  u->state = ST_RESOLVE;
  u->reused = 0;
  aigw__up_arm(u, u->connect_ms);
  /* May call on_resolved before returning (IP literal, cache hit). */
  u->dnsq = aigw_dns_resolve(u->loop->dns, u->t->host, u->t->port, on_resolved, u);
}
