/* upstream.c -- one upstream exchange: a pooled connection or a new one
 * (upstream_conn.c), the request head (upstream_head.c), and the response,
 * delivered to one of two sinks. The three files share upstream_int.h.
 *
 * The response is parsed with llhttp; headers are filtered (hop-by-hop ones
 * dropped, RFC 9110 section 7.6.1).
 *
 * Proxy sink (u->req): each read's worth of body is framed for the client
 * and queued as one write. When the client's write queue grows past a
 * high-water mark the upstream is not read until it drains, so a slow
 * client slows the upstream instead of filling memory. When the request
 * asks for it (r->filter_headers, r->filter_body) the head and each body
 * piece go through the Lua filters first; otherwise no Lua runs.
 *
 * Caller's sink (u->sink, aigw.http.request): the head and the body are
 * collected into the sink. Without streaming the owner hears once, at the
 * end. With streaming it hears when the head is in and after every read
 * that brought body bytes; reading then stops until it has taken them
 * (aigw_upstream_sink_more), so a busy consumer slows the upstream.
 *
 * The body path is chosen by one flag (slow_body): the proxy without
 * filters frames the bytes directly, with no indirect call per read.
 *
 * Lifetime: the exchange (aigw_upstream_t) is owned by its client request
 * or its sink until it completes or fails, which detaches it (r->up = NULL,
 * s->up = NULL). It is freed in the close callback of its timer. libuv
 * requests (connect, write) are heap-allocated and point at the connection,
 * never at the exchange, so an aborted exchange can be freed while they are
 * still queued. The target of an exchange with a sink is kept alive by the
 * sink's owner; while a streamed exchange waits for its owner to take a
 * piece, only its timer can fire, and that path (fail) does not touch the
 * target, so an owner being collected may free the two in either order. */
#include "upstream/upstream_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/errors.h"
#include "base/log.h"
#include "http/http_hooks.h"

static void tls_pump(aigw_upstream_t *u);
static const llhttp_settings_t *response_settings(void);

/* --- teardown --- */

/* Buffers up to this size stay with a recycled exchange. */
#define KEEP_BUF_CAP 8192
/* An error answer held for the filters larger than this is a bad answer. */
#define HELD_ERROR_MAX (1024 * 1024)
/* The response head (status and header lines, of interim answers too, as
 * llhttp hands them over) past either bound is a bad answer; trailers and
 * chunk extensions, which are read and dropped, get the same budget again. */
#define HEAD_MAX (64 * 1024)
#define HEAD_LINES_MAX 256

void aigw__upstream_destroy(void *p) {
  aigw_upstream_t *u = p;
  aigw_buf_free(&u->head);
  aigw_buf_free(&u->rhead);
  aigw_buf_free(&u->hname);
  aigw_buf_free(&u->hval);
  aigw_buf_free(&u->reason);
  aigw_buf_free(&u->conn_tokens);
  aigw_free(u);
}

static void on_timer_closed(uv_handle_t *h) {
  aigw_upstream_t *u = h->data;
  aigw_loop_t *loop = u->loop;
  if (u->out) aigw_wbuf_discard(u->out);
  u->out = NULL;
  aigw_buf_free(&u->held);
  if (u->tap) {
    aigw_json_tap_free(u->tap);
    aigw_free(u->tap);
    u->tap = NULL;
  }
  if (u->rbuf) aigw_rbuf_put(loop, u->rbuf);
  if (u->cbuf) aigw_rbuf_put(loop, u->cbuf);
  aigw_buf_t *bufs[] = {&u->head, &u->rhead, &u->hname, &u->hval, &u->reason, &u->conn_tokens};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) {
    if (bufs[i]->cap > KEEP_BUF_CAP) aigw_buf_free(bufs[i]);
    bufs[i]->len = 0;
  }
  if (!aigw_free_push(&loop->free_ups, u)) aigw__upstream_destroy(u);
}

/* Detaches the exchange from its request and frees it; the connection is
 * pooled when reusable, else closed. */
static void destroy(aigw_upstream_t *u, int reuse) {
  if (u->req) u->req->up = NULL;
  u->req = NULL;
  if (u->sink) u->sink->up = NULL;
  u->sink = NULL;
  if (u->dnsq) {
    aigw_dns_cancel(u->dnsq);
    u->dnsq = NULL;
  }
  if (u->uc) {
    aigw_upconn_t *uc = u->uc;
    u->uc = NULL;
    uc->user = NULL;
    /* A request write still queued points into buffers that are about to
     * go: such a connection is closed (which cancels the write), not pooled. */
    if (uc->writes > 0) reuse = 0;
    /* TLS records past the response, still inside OpenSSL: out of step. */
    if (uc->tls && aigw_tls_buffered(uc->tls)) reuse = 0;
    if (reuse && !uc->reading) start_read(uc);
    if (reuse) aigw_pool_release(uc->pool, uc, u->t->max_idle, u->t->idle_ms);
    else aigw_upconn_close(uc);
  }
  u->state = ST_DONE;
  uv_close((uv_handle_t *)&u->timer, on_timer_closed);
}

void aigw_upstream_abort(aigw_upstream_t *u) {
  if (u->req) aigw_log_debug("request %s: client gone, upstream cancelled", u->req->id);
  destroy(u, 0);
}

/* The upstream failed after the response began, with a body filter on a
 * chunked response: the filter may end the body with its own last words
 * (an error event in the client's stream format). 0 when it did and the
 * response is complete; -1 when the connection must be cut instead. */
SLOW_PATH static int end_with_filter(aigw_req_t *r, aigw_wbuf_t **out, const char *msg) {
  const char *p;
  size_t n;
  if (aigw_http_hooks.body_filter(r, "", 0, 1, msg, &p, &n) != 0 || n == 0) return -1;
  if (r->conn->closing || aigw_respond_body(r, out, p, n) != 0) return -1;
  aigw_respond_end(r, out);
  return 0;
}

SLOW_PATH static void attempt_error(aigw_upstream_t *u, int reuse);

/* An attempt failed before its first byte: the caller hears why, the
 * client has had nothing. */
SLOW_PATH static void attempt_failed(aigw_upstream_t *u, int status, const char *code,
                                     const char *msg) {
  if (u->hold_error) {
    /* An error answer that could not be held whole (too large, cut short):
     * still the upstream's status, with what came of its body. */
    attempt_error(u, 0);
    return;
  }
  aigw_attempt_t *a = u->attempt;
  u->attempt = NULL;
  a->status = 0;
  a->fail_status = status;
  a->code = code;
  snprintf(a->msg, sizeof a->msg, "%s", msg);
  destroy(u, 0);
  a->failed(a);
}

/* An attempt's upstream answered with an error status, held whole: the
 * answer goes to the caller, the connection back to the pool. */
SLOW_PATH static void attempt_error(aigw_upstream_t *u, int reuse) {
  aigw_attempt_t *a = u->attempt;
  u->attempt = NULL;
  a->status = u->held_status;
  a->head = u->rhead;
  a->body = u->held;
  memset(&u->rhead, 0, sizeof u->rhead);
  memset(&u->held, 0, sizeof u->held);
  destroy(u, reuse);
  a->failed(a);
}

/* The exchange failed. Proxy: the client gets an error response (status,
 * code, msg), or, if its response already started, its connection is
 * closed (a truncated body must not look complete). Sink: err is `why`. */
void aigw__up_fail(aigw_upstream_t *u, int status, const char *code, const char *msg,
                   const char *why) {
  aigw_upstream_sink_t *s = u->sink;
  if (s) {
    aigw_log_debug("aigw.http: %s", why);
    snprintf(s->errbuf, sizeof s->errbuf, "%s", why);
    s->err = s->errbuf;
    s->paused = 0;
    destroy(u, 0);
    s->notify(s);
    return;
  }
  aigw_req_t *r = u->req;
  if (r) {
    aigw_log_warn("request %s: upstream %s:%u: %s", r->id, u->t->host, u->t->port, msg);
  }
  if (u->attempt) {
    attempt_failed(u, status, code, msg);
    return;
  }
  int filtering = u->filtering, eof_filtered = u->eof_filtered;
  aigw_wbuf_t *out = u->out;
  u->out = NULL;
  destroy(u, 0);
  if (r == NULL) {
    if (out) aigw_wbuf_discard(out);
    return;
  }
  if (!r->responded) {
    if (out) aigw_wbuf_discard(out);
    aigw_respond_error(r, status, code, msg);
  } else if (!filtering || eof_filtered || !r->chunked_out || end_with_filter(r, &out, msg) != 0) {
    if (out) aigw_wbuf_discard(out);
    aigw_conn_close(r->conn);
  }
}

/* A response filter failed (the phase has logged why): a 500 in the
 * request's envelope, or, once the response has started, a closed
 * connection. */
SLOW_PATH static void filter_failed(aigw_upstream_t *u) {
  aigw_req_t *r = u->req;
  destroy(u, 0);
  if (!r->responded) aigw_respond_error(r, 500, "internal_error", "internal error in the gateway");
  else aigw_conn_close(r->conn);
}

/* --- timers --- */

static void on_timeout(uv_timer_t *t) {
  aigw_upstream_t *u = t->data;
  uint64_t now = uv_now(&u->loop->uv);
  if (now < u->wait_until) {
    /* The wait was extended since the timer was set (lazy re-arm). */
    uv_timer_start(&u->timer, on_timeout, u->wait_until - now, 0);
    u->timer_due = u->wait_until;
    return;
  }
  if (now >= u->deadline && u->attempt && u->deadline < u->full_deadline)
    aigw__up_fail(u, 504, "upstream_timeout", "upstream first byte timeout", "timeout");
  else if (now >= u->deadline)
    aigw__up_fail(u, 504, "upstream_timeout", "upstream timeout (total)", "timeout");
  else if (u->state <= ST_HANDSHAKE)
    aigw__up_fail(u, 504, "upstream_timeout", "upstream connect timeout", "timeout");
  else aigw__up_fail(u, 504, "upstream_timeout", "upstream read timeout", "timeout");
}

/* Waits at most ms (0: only the total deadline) for the next event. The
 * libuv timer is restarted only when the wait ends earlier than planned. */
void aigw__up_arm(aigw_upstream_t *u, uint64_t ms) {
  uint64_t now = uv_now(&u->loop->uv);
  uint64_t until = ms ? now + ms : u->deadline;
  if (until > u->deadline) until = u->deadline;
  u->wait_until = until;
  if (!uv_is_active((uv_handle_t *)&u->timer) || u->timer_due > until) {
    uv_timer_start(&u->timer, on_timeout, until > now ? until - now : 1, 0);
    u->timer_due = until;
  }
}

/* --- reading the response --- */

SLOW_PATH static void sink_finish(aigw_upstream_t *u, int reuse) {
  aigw_upstream_sink_t *s = u->sink;
  destroy(u, reuse && !u->no_reuse);
  s->eof = 1;
  s->paused = 0;
  s->notify(s);
}

/* A held error answer is complete: it goes out through the filters. The
 * exchange's buffers stay valid until its timer has closed. */
SLOW_PATH static void respond_held(aigw_upstream_t *u, int reuse) {
  aigw_req_t *r = u->req;
  destroy(u, reuse);
  aigw_http_hooks.respond_upstream(r, u->held_status, u->rhead.data ? u->rhead.data : "",
                                   u->rhead.len, u->held.data ? u->held.data : "", u->held.len);
}

static void finish_ok(aigw_upstream_t *u, int reuse) {
  if (u->sink) {
    sink_finish(u, reuse);
    return;
  }
  if (u->hold_error) {
    if (u->attempt) attempt_error(u, reuse);
    else respond_held(u, reuse);
    return;
  }
  aigw_req_t *r = u->req;
  aigw_wbuf_t *out = u->out;
  u->out = NULL;
  destroy(u, reuse);
  aigw_respond_end(r, &out);
}

/* A read for a caller's sink was parsed: with streaming, hand over what it
 * brought and stop reading until the owner has taken it. */
SLOW_PATH static void sink_after_read(aigw_upstream_t *u) {
  if (!u->ready) {
    aigw__up_arm(u, u->read_ms);
    return;
  }
  aigw_upstream_sink_t *s = u->sink;
  u->ready = 0;
  stop_read(u->uc);
  u->paused = 1;
  s->paused = 1;
  aigw__up_arm(u, 0); /* only the total deadline runs while the owner is busy */
  s->notify(s);
}

SLOW_PATH static void parse_failed(aigw_upstream_t *u, llhttp_errno_t err) {
  if (u->too_big) {
    aigw__up_fail(u, 502, "bad_gateway", "upstream response too large", "response body too large");
    return;
  }
  if (u->nomem) {
    aigw__up_fail(u, 503, "no_memory", "no memory", "no memory");
    return;
  }
  if (u->bad) {
    aigw__up_fail(u, 502, "bad_gateway", u->bad, u->bad_why);
    return;
  }
  aigw_log_debug("upstream response: %s (%s)", llhttp_errno_name(err),
                 llhttp_get_error_reason(&u->parser));
  aigw__up_fail(u, 502, "bad_gateway", "bad upstream response", "bad response");
}

static void process(aigw_upstream_t *u, const char *data, size_t len) {
  u->got_bytes = 1;
  llhttp_errno_t err = llhttp_execute(&u->parser, data, len);
  if (u->state == ST_DONE) return; /* ended inside a callback (a filter, the client) */
  if (err == HPE_PAUSED && u->complete) {
    /* Bytes after the response mean the connection is out of step. */
    int extra = llhttp_get_error_pos(&u->parser) != data + len;
    finish_ok(u, !extra && llhttp_should_keep_alive(&u->parser));
    return;
  }
  if (err != HPE_OK) {
    parse_failed(u, err);
    return;
  }
  if (u->sink) {
    sink_after_read(u);
    return;
  }
  if (u->out) {
    aigw_wbuf_send(u->out);
    u->out = NULL;
    if (u->state == ST_DONE) return;
  }
  if (aigw_conn_write_queue(u->req->conn) > CLIENT_HIGH_WATER) {
    stop_read(u->uc);
    u->paused = 1;
    aigw__up_arm(u, 0); /* only the total deadline runs while the client catches up */
  } else {
    aigw__up_arm(u, u->read_ms);
  }
}

/* Whether a request that failed on a reused connection before any answer
 * may be sent again: always for idempotent methods; otherwise only if part
 * of it never left us, so the server cannot have acted on all of it. */
int aigw__up_safe_to_retry(aigw_upstream_t *u) {
  int m = u->method;
  if (m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS || m == HTTP_PUT || m == HTTP_DELETE)
    return 1;
  return uv_stream_get_write_queue_size((uv_stream_t *)&u->uc->tcp) > 0;
}

/* The upstream closed (status UV_EOF) or failed. bare_fin: a TLS
 * connection's TCP stream ended without a close_notify, which anyone on
 * the path can forge: it cannot end a close-delimited body (RFC 8446 6.1). */
static void on_eof(aigw_upstream_t *u, int status, int bare_fin) {
  if (!u->got_bytes && u->reused && !u->retried && u->state == ST_WAIT &&
      aigw__up_safe_to_retry(u)) {
    /* A pooled connection the server had already closed: retry once on a
     * fresh one. */
    if (u->req)
      aigw_log_debug("request %s: pooled upstream connection was closed, reconnecting", u->req->id);
    aigw_upconn_t *uc = u->uc;
    u->uc = NULL;
    uc->user = NULL;
    aigw_upconn_close(uc);
    u->retried = 1;
    llhttp_init(&u->parser, HTTP_RESPONSE, response_settings());
    u->parser.data = u;
    aigw__up_start_connect(u);
    return;
  }
  if (status == UV_EOF && u->state == ST_BODY && bare_fin) {
    aigw__up_fail(u, 502, "bad_gateway",
                  "upstream closed the connection mid-response (no tls close_notify)",
                  "closed mid-response");
    return;
  }
  if (status == UV_EOF && u->state == ST_BODY) {
    /* A close-delimited body ends here; a framed one is truncated. */
    llhttp_errno_t err = llhttp_finish(&u->parser);
    if (u->state == ST_DONE) return; /* the body filter failed */
    if ((err == HPE_OK || err == HPE_PAUSED) && u->complete) {
      finish_ok(u, 0);
      return;
    }
    aigw__up_fail(u, 502, "bad_gateway", "upstream closed the connection mid-response",
                  "closed mid-response");
    return;
  }
  if (u->state == ST_HANDSHAKE) {
    aigw__up_fail(u, 502, "bad_gateway", "upstream closed the connection during the tls handshake",
                  "tls: closed during the handshake");
    return;
  }
  char msg[160], why[160];
  snprintf(msg, sizeof msg, "upstream closed the connection%s%s", status == UV_EOF ? "" : ": ",
           status == UV_EOF ? "" : uv_strerror(status));
  snprintf(why, sizeof why, "closed%s%s", status == UV_EOF ? "" : ": ",
           status == UV_EOF ? "" : uv_strerror(status));
  aigw__up_fail(u, 502, "bad_gateway", msg, why);
}

void aigw__up_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  aigw_upconn_t *uc = s->data;
  aigw_upstream_t *u = uc->user;
  if (nread == 0) return;
  if (u == NULL) {
    if (!uc->closing) aigw__pool_idle_broken(uc);
    return;
  }
  if (nread < 0) {
    on_eof(u, (int)nread, uc->tls != NULL);
    return;
  }
  if (uc->tls == NULL) {
    process(u, buf->base, (size_t)nread);
    return;
  }
  if (aigw_tls_feed(uc->tls, buf->base, (size_t)nread) < 0) {
    aigw__up_fail(u, 503, "no_memory", "no memory", "no memory");
    return;
  }
  if (!aigw_tls_handshake_done(uc->tls)) {
    int rc = aigw_tls_handshake(uc->tls);
    if (aigw__up_tls_flush(u) < 0) {
      aigw__up_fail(u, 502, "bad_gateway", "upstream write failed", "write failed");
      return;
    }
    if (rc < 0) {
      char msg[300], why[300];
      snprintf(msg, sizeof msg, "tls handshake with upstream failed: %s",
               aigw_tls_last_error(uc->tls));
      snprintf(why, sizeof why, "tls: %s", aigw_tls_last_error(uc->tls));
      aigw__up_fail(u, 502, rc == AIGW_ETLS_VERIFY ? "upstream_tls_verify_failed" : "bad_gateway",
                    msg, why);
      return;
    }
    if (rc == AIGW_TLS_WANT_IO) return;
    aigw__up_send_request(u);
    if (u->uc == NULL || u->uc->user != u) return;
  }
  tls_pump(u);
}

/* Decrypts and processes what OpenSSL holds, until it runs dry, the
 * exchange ends, or the client (or the sink's owner) asks us to pause. */
static void tls_pump(aigw_upstream_t *u) {
  aigw_upconn_t *uc = u->uc;
  if (u->rbuf == NULL) u->rbuf = aigw_rbuf_get(u->loop);
  for (;;) {
    int n = aigw_tls_read(uc->tls, u->rbuf, AIGW_RBUF_SIZE);
    if (aigw__up_tls_flush(u) < 0) {
      aigw__up_fail(u, 502, "bad_gateway", "upstream write failed", "write failed");
      return;
    }
    if (n == 0) break;
    if (n == AIGW_EUPSTREAM_CLOSED) {
      on_eof(u, UV_EOF, 0);
      return;
    }
    if (n < 0) {
      aigw__up_fail(u, 502, "bad_gateway", "tls error reading from upstream", "tls: read error");
      return;
    }
    process(u, u->rbuf, (size_t)n);
    if (u->uc == NULL || u->uc->user != u || u->paused) return;
  }
}

static inline void resume_reading(aigw_upstream_t *u) {
  if (!u->paused || u->uc == NULL) return;
  u->paused = 0;
  start_read(u->uc);
  aigw__up_arm(u, u->read_ms);
  /* Records decrypted before the pause may still wait inside OpenSSL. */
  if (u->uc->tls) tls_pump(u);
}

void aigw_upstream_client_drained(aigw_upstream_t *u) { resume_reading(u); }

void aigw_upstream_sink_more(aigw_upstream_t *u) {
  if (u->sink) u->sink->paused = 0;
  resume_reading(u);
}

/* --- response parsing callbacks --- */

/* Refuses the answer from inside a parser callback: process() fails the
 * exchange with msg (for a caller's sink, why). */
SLOW_PATH static int bad_answer(aigw_upstream_t *u, const char *msg, const char *why) {
  u->bad = msg;
  u->bad_why = why;
  return -1;
}

/* Past HEAD_MAX or HEAD_LINES_MAX: the head, or trailers and chunk
 * extensions once the body has begun. */
SLOW_PATH static int over_budget(aigw_upstream_t *u) {
  if (u->state == ST_BODY)
    return bad_answer(u, "upstream chunk extensions or trailers too large", "bad response");
  return bad_answer(u, "upstream response head too large", "response head too large");
}

/* Counts n bytes of the head, or once the body has begun, of trailers and
 * chunk extensions, which llhttp would otherwise read without end. */
static inline int count_head(aigw_upstream_t *u, size_t n) {
  u->head_bytes += (uint32_t)n; /* n is at most a read buffer */
  if (__builtin_expect(u->head_bytes <= HEAD_MAX, 1)) return 0;
  return over_budget(u);
}

/* Appends a piece of a header name or value. A line is counted when it
 * ends; until then the bound is checked only when the buffer must grow, so
 * that none grows past HEAD_MAX at no cost to the usual append. */
static inline int head_append(aigw_upstream_t *u, aigw_buf_t *b, const char *at, size_t n) {
  if (__builtin_expect(b->len + n > b->cap, 0)) {
    if (b->len + n > HEAD_MAX) return over_budget(u);
    if (aigw_buf_reserve(b, n)) return -1;
  }
  memcpy(b->data + b->len, at, n);
  b->len += n;
  return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t len) {
  aigw_upstream_t *u = p->data;
  if (count_head(u, len)) return -1; /* a few bytes an answer: counted as they come */
  /* The reason phrase goes to the client's status line: HTAB, SP, VCHAR
   * and obs-text only (RFC 9112 4). */
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)at[i];
    if ((c < 0x20 && c != '\t') || c == 0x7f)
      return bad_answer(u, "upstream sent a control character in the reason phrase",
                        "bad response");
  }
  return aigw_buf_append(&u->reason, at, len) ? -1 : 0;
}

/* Chunk extensions are skipped; their bytes count against the budget. */
static int on_chunk_extension(llhttp_t *p, const char *at, size_t len) {
  (void)at;
  return count_head(p->data, len);
}

static int on_resp_header_field(llhttp_t *p, const char *at, size_t len) {
  aigw_upstream_t *u = p->data;
  return head_append(u, &u->hname, at, len);
}

static int on_resp_header_value(llhttp_t *p, const char *at, size_t len) {
  aigw_upstream_t *u = p->data;
  return head_append(u, &u->hval, at, len);
}

static int on_resp_header_value_complete(llhttp_t *p) {
  aigw_upstream_t *u = p->data;
  /* The line's ": " and CRLF count too, so the lines kept fit the budget. */
  u->head_bytes += (uint32_t)(u->hname.len + u->hval.len + 4);
  if (__builtin_expect(++u->head_lines > HEAD_LINES_MAX || u->head_bytes > HEAD_MAX, 0))
    return over_budget(u);
  if (__builtin_expect(u->state == ST_BODY, 0)) {
    /* A chunked trailer: counted, never kept (RFC 9110 6.5.1), so none can
     * join a head or a held error's lines. */
    u->hname.len = u->hval.len = 0;
    return 0;
  }
  const char *n = u->hname.data;
  size_t nl = u->hname.len;
  int rc = 0;
  if (nl == 10 && strncasecmp(n, "connection", 10) == 0) {
    rc |= aigw_buf_append(&u->conn_tokens, u->hval.data ? u->hval.data : "", u->hval.len);
    rc |= aigw_buf_append(&u->conn_tokens, ",", 1);
  } else if (is_hop_by_hop(n, nl) ||
             (nl == 14 && u->sink == NULL && strncasecmp(n, "content-length", 14) == 0)) {
    /* dropped: framing is ours (a sink keeps Content-Length: the body it
     * gets is the one announced) */
  } else {
    if (nl == 12 && u->sink == NULL && strncasecmp(n, "x-request-id", 12) == 0) {
      rc |= aigw_buf_append(&u->rhead, "x-upstream-request-id", 21);
    } else {
      if (nl == 4 && strncasecmp(n, "date", 4) == 0) u->has_date = 1;
      rc |= aigw_buf_append(&u->rhead, n, nl);
    }
    rc |= aigw_buf_append(&u->rhead, ": ", 2);
    if (u->hval.len) rc |= aigw_buf_append(&u->rhead, u->hval.data, u->hval.len);
    rc |= aigw_buf_append(&u->rhead, "\r\n", 2);
  }
  u->hname.len = u->hval.len = 0;
  return rc ? -1 : 0;
}

/* Drops header lines named by the upstream's Connection header. */
static void drop_connection_tokens(aigw_upstream_t *u) {
  if (u->conn_tokens.len == 0 || u->rhead.len == 0) return;
  const char *p = u->conn_tokens.data, *end = p + u->conn_tokens.len, *a;
  size_t tl;
  while (next_token(&p, end, &a, &tl)) {
    if (tl) {
      char *line = u->rhead.data, *hend = u->rhead.data + u->rhead.len;
      while (line < hend) {
        char *eol = memchr(line, '\n', (size_t)(hend - line));
        size_t ll = (size_t)(eol - line) + 1;
        if (ll > tl + 1 && line[tl] == ':' && strncasecmp(line, a, tl) == 0) {
          memmove(line, eol + 1, (size_t)(hend - eol - 1));
          u->rhead.len -= ll;
          hend -= ll;
        } else {
          line = eol + 1;
        }
      }
    }
  }
}

/* The head for a caller's sink: it takes the header lines. */
SLOW_PATH static int sink_head(aigw_upstream_t *u, const llhttp_t *p, int status, int no_body) {
  aigw_upstream_sink_t *s = u->sink;
  aigw_buf_t lines = u->rhead;
  u->rhead = s->head;
  u->rhead.len = 0;
  s->head = lines;
  s->status = status;
  s->head_done = 1;
  u->slow_body = 1;
  if (!no_body && (p->flags & F_CONTENT_LENGTH) && !(p->flags & F_CHUNKED) && !s->stream) {
    if (p->content_length > s->max_body) {
      u->too_big = 1;
      return -1;
    }
    if (aigw_buf_reserve(&s->body, (size_t)p->content_length)) {
      u->nomem = 1;
      return -1;
    }
  }
  if (s->stream) u->ready = 1;
  return no_body ? 1 : 0;
}

/* The proxy's head when a filter runs: the header filter may change the
 * status and the lines; a body filter makes the response chunked. Returns
 * -1 when the exchange has ended (or must). */
SLOW_PATH static int filtered_head(aigw_upstream_t *u, unsigned flags, uint64_t length, int *status,
                                   const char **reason, size_t *rlen, const char **lines,
                                   size_t *hlen, int64_t *cl) {
  aigw_req_t *r = u->req;
  if (r->filter_headers) {
    int st = *status;
    int rc = aigw_http_hooks.header_filter(r, &st, lines, hlen, 1, NULL, 0);
    if (u->state == ST_DONE) return -1; /* the request ended meanwhile */
    if (rc == 1) {
      /* A plugin answered instead (aigw.exit): that answer goes out once
       * the exchange is gone. */
      destroy(u, 0);
      aigw_http_hooks.respond_exit(r);
      return -1;
    }
    if (rc != 0 || st < 200 || st > 599) {
      filter_failed(u);
      return -1;
    }
    if (st != *status) {
      *status = st;
      *reason = NULL;
      *rlen = 0;
    }
    u->has_date = aigw_lines_have(*lines, *hlen, "date", 4);
  }
  int st = *status;
  int known = (flags & F_CONTENT_LENGTH) && !(flags & F_CHUNKED);
  int client_no_body = u->method == HTTP_HEAD || st == 204 || st == 304;
  /* A body filter that only observes leaves the framing as it was. */
  int rewrites = r->filter_body && !r->observe_body;
  if (st == 204 || st == 304) *cl = -2;
  else if (u->method == HTTP_HEAD) *cl = known && !rewrites ? (int64_t)length : -2;
  else if (u->no_body) *cl = 0; /* the upstream's 204 or 304 became another status */
  else if (rewrites || !known) *cl = -1;
  else *cl = (int64_t)length;
  if (client_no_body && !u->no_body) u->discard_body = u->slow_body = 1;
  else if (r->filter_body && !u->no_body) u->filtering = u->slow_body = 1;
  if (u->filtering && r->observe_body && r->tap_usage) {
    /* Only the usage member is wanted: followed here, Lua called once. */
    u->tap = aigw_try_malloc(sizeof *u->tap);
    if (u->tap) aigw_json_tap_init(u->tap, "usage");
  }
  return 0;
}

/* The response head to the client: through the header filter when one
 * runs, framed by what the upstream said (flags and content length as
 * llhttp had them at the end of the head). */
static int send_head(aigw_upstream_t *u, int status, unsigned flags, uint64_t length) {
  aigw_req_t *r = u->req;
  const char *lines = u->rhead.data, *reason = u->reason.data;
  size_t hlen = u->rhead.len, rlen = u->reason.len;
  int64_t cl = -1;
  if (__builtin_expect(r->filter_headers || r->filter_body, 0)) {
    if (filtered_head(u, flags, length, &status, &reason, &rlen, &lines, &hlen, &cl) != 0)
      return -1;
  } else if (status == 204 || status == 304) {
    cl = -2;
  } else if ((flags & F_CONTENT_LENGTH) && !(flags & F_CHUNKED)) {
    cl = (int64_t)length;
  } else if (u->no_body) {
    cl = -2;
  }
  r->has_date = u->has_date;
  if (u->out == NULL) {
    /* One write for head and body when the body is small and its size known. */
    size_t body = cl > 0 && cl <= AIGW_RBUF_SIZE ? (size_t)cl : 0;
    u->out = aigw_wbuf_new(r->conn, 512 + hlen + body);
  }
  /* Lines a header filter returned are checked; the upstream's own, as
   * llhttp parsed them, need not be. */
  int rc =
      aigw_respond_head(r, &u->out, status, reason, rlen, lines, hlen, cl, lines == u->rhead.data);
  if (__builtin_expect(rc == AIGW_EHEAD_REFUSED, 0)) {
    /* Nothing of the head was queued (logged as refused): a 500 instead. */
    filter_failed(u);
    return -1;
  }
  return rc != 0 ? -1 : 0;
}

/* An attempt's first body byte is in (or its body-less answer ended): the
 * head it held goes out, and from here the exchange is an ordinary proxy. */
SLOW_PATH static int commit_head(aigw_upstream_t *u) {
  u->trial_head = 0;
  u->slow_body = 0;
  u->attempt = NULL;
  u->deadline = u->full_deadline;
  u->req->head_ns = uv_hrtime();
  return send_head(u, u->trial_status, u->trial_flags, u->trial_cl);
}

/* An attempt's head: an error answer is held whole for the caller; any
 * other waits for its first body byte. */
SLOW_PATH static int attempt_head(aigw_upstream_t *u, const llhttp_t *p, int status) {
  if (status >= 400) {
    u->hold_error = u->slow_body = 1;
    u->held_status = status;
    return u->no_body ? 1 : 0;
  }
  u->trial_head = u->slow_body = 1;
  u->trial_status = status;
  u->trial_flags = (uint16_t)p->flags;
  u->trial_cl = p->content_length;
  return u->no_body ? 1 : 0;
}

/* An interim answer (1xx): not relayed, and it has no body (RFC 9110
 * 15.2), whatever it says. llhttp would read one it announces, and hand
 * it over before any head: such an answer is refused, as is a protocol
 * switch nobody asked for. */
SLOW_PATH static int interim_head(aigw_upstream_t *u, const llhttp_t *p, int status) {
  if (status < 100) return bad_answer(u, "upstream sent a bad status", "bad response");
  if (status == 101)
    return bad_answer(u, "upstream switched protocols (101) without being asked", "bad response");
  if ((p->flags & (F_CHUNKED | F_TRANSFER_ENCODING)) ||
      ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0))
    return bad_answer(u, "upstream sent an interim response with a body", "bad response");
  u->rhead.len = u->reason.len = u->conn_tokens.len = 0;
  u->has_date = 0;
  return 1; /* no body: the next answer follows */
}

static int on_resp_headers_complete(llhttp_t *p) {
  aigw_upstream_t *u = p->data;
  int status = p->status_code;
  if (__builtin_expect(status < 200 || status > 599, 0)) {
    if (status > 599) return bad_answer(u, "upstream sent a bad status", "bad response");
    return interim_head(u, p, status);
  }
  drop_connection_tokens(u);
  u->state = ST_BODY;
  /* From here on, body pieces have a place to go: the path below chooses. */
  u->slow_body = 0;
  u->head_bytes = u->head_lines = 0;
  u->no_body = u->method == HTTP_HEAD || status == 204 || status == 304;
  if (u->sink) return sink_head(u, p, status, u->no_body);
  if (__builtin_expect(u->attempt != NULL, 0)) return attempt_head(u, p, status);
  aigw_req_t *r = u->req;
  if (__builtin_expect(status >= 400 && r->filter_errors, 0) && !u->no_body) {
    /* A plugin reshapes error answers (the error-mapping plugin): small,
     * so kept whole and handed over with their body. */
    u->hold_error = u->slow_body = 1;
    u->held_status = status;
    r->filter_headers = 1;
    return 0;
  }
  if (send_head(u, status, p->flags, p->content_length) != 0) return -1;
  return u->no_body ? 1 : 0;
}

/* The body filter ended the client's stream before the upstream's (the
 * provider's error event, or a stream the gateway refused): its piece is the
 * last of the response. The rest of the upstream's answer is not wanted:
 * the exchange ends now and its connection, mid-answer, is closed. */
SLOW_PATH static void filter_ended(aigw_upstream_t *u, const char *p, size_t n) {
  aigw_req_t *r = u->req;
  aigw_wbuf_t *b = u->out;
  u->out = NULL;
  destroy(u, 0);
  if (aigw_respond_body(r, &b, p, n) != 0) {
    if (b) aigw_wbuf_discard(b);
    aigw_conn_close(r->conn);
    return;
  }
  aigw_respond_end(r, &b);
}

/* Body pieces that do not go straight to the client: to a caller's sink,
 * through the body filter, or nowhere (the filtered status has no body). */
SLOW_PATH static int slow_body(aigw_upstream_t *u, const char *at, size_t len) {
  /* Before a final head there is nowhere to put body bytes (see
   * exchange_init); llhttp gives none then, but a proxy must not trust it. */
  if (u->state != ST_BODY) return bad_answer(u, "bad upstream response", "bad response");
  aigw_upstream_sink_t *s = u->sink;
  if (s) {
    if (!s->stream && s->body.len + len > s->max_body) {
      u->too_big = 1;
      return -1;
    }
    if (aigw_buf_append(&s->body, at, len)) {
      u->nomem = 1;
      return -1;
    }
    u->ready = s->stream;
    return 0;
  }
  if (u->trial_head) {
    if (commit_head(u) != 0) return -1;
    if (!u->slow_body) return aigw_respond_body(u->req, &u->out, at, len) ? -1 : 0;
  }
  if (u->discard_body) return 0;
  if (u->tap) {
    aigw_json_tap_feed(u->tap, at, len);
    return aigw_respond_body(u->req, &u->out, at, len) ? -1 : 0;
  }
  if (u->hold_error) {
    if (u->held.len + len > HELD_ERROR_MAX) {
      u->too_big = 1;
      return -1;
    }
    if (aigw_buf_append(&u->held, at, len)) {
      u->nomem = 1;
      return -1;
    }
    return 0;
  }
  aigw_req_t *r = u->req;
  const char *out;
  size_t olen;
  int rc = aigw_http_hooks.body_filter(r, at, len, 0, NULL, &out, &olen);
  if (u->state == ST_DONE) return -1;
  if (rc < 0) {
    filter_failed(u);
    return -1;
  }
  if (r->observe_body) {
    out = at;
    olen = len;
  } else if (rc == 1) {
    filter_ended(u, out, olen);
    return -1;
  }
  return aigw_respond_body(r, &u->out, out, olen) ? -1 : 0;
}

static int on_resp_body(llhttp_t *p, const char *at, size_t len) {
  aigw_upstream_t *u = p->data;
  if (u->slow_body) return slow_body(u, at, len);
  return aigw_respond_body(u->req, &u->out, at, len) ? -1 : 0;
}

/* The body filter's last call (eof), possibly with nothing new. */
SLOW_PATH static int filter_eof(aigw_upstream_t *u) {
  aigw_req_t *r = u->req;
  const char *out;
  size_t olen;
  int rc;
  u->eof_filtered = 1;
  if (u->tap) {
    aigw_buf_t *v = &u->tap->value;
    rc = aigw_http_hooks.body_filter_usage(r, v->len ? v->data : NULL, v->len);
    if (u->state == ST_DONE) return -1;
    if (rc != 0) {
      filter_failed(u);
      return -1;
    }
    return 0;
  }
  rc = aigw_http_hooks.body_filter(r, "", 0, 1, NULL, &out, &olen);
  if (u->state == ST_DONE) return -1;
  if (rc != 0) {
    filter_failed(u);
    return -1;
  }
  if (r->observe_body) return 0;
  return aigw_respond_body(r, &u->out, out, olen) ? -1 : 0;
}

static int on_resp_message_complete(llhttp_t *p) {
  aigw_upstream_t *u = p->data;
  if (u->state != ST_BODY) return 0; /* an interim 1xx ended */
  if (u->trial_head && commit_head(u) != 0) return -1;
  if (u->filtering && filter_eof(u) != 0) return -1;
  u->complete = 1;
  return HPE_PAUSED;
}

/* Filled once, read-only after: shared by every worker thread. */
static const llhttp_settings_t response_parser_settings = {
    .on_status = on_status,
    .on_header_field = on_resp_header_field,
    .on_header_value = on_resp_header_value,
    .on_header_value_complete = on_resp_header_value_complete,
    .on_headers_complete = on_resp_headers_complete,
    .on_body = on_resp_body,
    .on_message_complete = on_resp_message_complete,
    .on_chunk_extension_name = on_chunk_extension,
    .on_chunk_extension_value = on_chunk_extension,
};

static const llhttp_settings_t *response_settings(void) { return &response_parser_settings; }

/* A cleared exchange, recycled (keeping its buffers) or new. */
static inline __attribute__((always_inline)) aigw_upstream_t *exchange_new(aigw_loop_t *loop) {
  aigw_upstream_t *u = aigw_free_pop(&loop->free_ups);
  if (u) {
    /* Recycled: keep the buffers (emptied when parked), clear the rest. */
    aigw_buf_t keep[6] = {u->head, u->rhead, u->hname, u->hval, u->reason, u->conn_tokens};
    memset(u, 0, sizeof *u);
    u->head = keep[0];
    u->rhead = keep[1];
    u->hname = keep[2];
    u->hval = keep[3];
    u->reason = keep[4];
    u->conn_tokens = keep[5];
  } else {
    u = aigw_try_malloc(sizeof *u);
    if (u == NULL) return NULL;
    memset(u, 0, sizeof *u);
  }
  u->loop = loop;
  return u;
}

static inline __attribute__((always_inline)) void exchange_init(aigw_upstream_t *u,
                                                                uint64_t total_ms) {
  aigw_loop_t *loop = u->loop;
  uv_timer_init(&loop->uv, &u->timer);
  u->timer.data = u;
  llhttp_init(&u->parser, HTTP_RESPONSE, response_settings());
  u->parser.data = u;
  /* Body bytes take the slow path, which refuses them, until a final head
   * is in: the fast path's only test stays the one it had. */
  u->slow_body = 1;
  u->deadline = uv_now(&loop->uv) + (total_ms ? total_ms : UINT32_MAX);
  aigw_buf_reserve(&u->rhead, 768);
}

/* Sends on an idle pooled connection for the target, or connects. */
static inline __attribute__((always_inline)) void exchange_go(aigw_upstream_t *u, int pooled) {
  aigw_upconn_t *uc = pooled ? aigw_pool_acquire(u->loop->pool, u->t->pool_key) : NULL;
  if (uc) {
    u->uc = uc;
    uc->user = u;
    u->reused = 1;
    if (!uc->reading) start_read(uc);
    aigw__up_send_request(u);
    return;
  }
  aigw__up_start_connect(u);
}

static inline __attribute__((always_inline)) void proxy_start(aigw_req_t *r, aigw_target_t *t,
                                                              const char *path, size_t plen,
                                                              const char *body, size_t blen,
                                                              const char *extra, size_t elen,
                                                              aigw_attempt_t *a) {
  aigw_upstream_t *u = exchange_new(r->conn->loop);
  if (u == NULL) {
    if (a) {
      a->status = 0;
      a->fail_status = 503;
      a->code = "no_memory";
      snprintf(a->msg, sizeof a->msg, "no memory");
      a->failed(a);
    } else {
      aigw_respond_error(r, 503, "no_memory", "no memory");
    }
    return;
  }
  u->req = r;
  u->t = t;
  u->method = r->method;
  u->connect_ms = t->connect_ms;
  u->read_ms = t->read_ms;
  u->body = body ? body : r->body.data;
  u->blen = body ? blen : r->body.len;
  r->up = u;
  if (a) {
    u->attempt = a;
    exchange_init(u, a->total_ms ? a->total_ms : t->total_ms);
    u->full_deadline = u->deadline;
    uint64_t first = uv_now(&u->loop->uv) + a->ttfb_ms;
    if (a->ttfb_ms && first < u->deadline) u->deadline = first;
  } else {
    exchange_init(u, t->total_ms);
  }
  const char *why = NULL;
  int rc = aigw__up_build_head(u, path, plen, extra, elen, &why);
  if (__builtin_expect(rc != 0, 0)) {
    if (rc == AIGW_EHEAD_REFUSED) {
      /* Lines a plugin or the runtime made: the gateway's fault, never sent. */
      aigw_log_error("request %s: refused upstream request head: %s", r->id, why);
      aigw__up_fail(u, 500, "internal_error", "internal error in the gateway", why);
    } else {
      aigw__up_fail(u, 503, "no_memory", "no memory", "no memory");
    }
    return;
  }
  exchange_go(u, 1);
}

void aigw_upstream_start(aigw_req_t *r, aigw_target_t *t, const char *path, size_t plen,
                         const char *body, size_t blen, const char *extra, size_t elen) {
  proxy_start(r, t, path, plen, body, blen, extra, elen, NULL);
}

void aigw_upstream_attempt(aigw_req_t *r, aigw_target_t *t, const char *path, size_t plen,
                           const char *body, size_t blen, const char *extra, size_t elen,
                           aigw_attempt_t *a) {
  proxy_start(r, t, path, plen, body, blen, extra, elen, a);
}

static uint8_t method_number(const char *m) {
  static const struct {
    const char *name;
    uint8_t num;
  } known[] = {{"GET", HTTP_GET},        {"POST", HTTP_POST},     {"HEAD", HTTP_HEAD},
               {"PUT", HTTP_PUT},        {"DELETE", HTTP_DELETE}, {"PATCH", HTTP_PATCH},
               {"OPTIONS", HTTP_OPTIONS}};
  for (size_t i = 0; i < sizeof known / sizeof *known; i++)
    if (strcmp(m, known[i].name) == 0) return known[i].num;
  return METHOD_OTHER;
}

int aigw_upstream_fetch(aigw_loop_t *loop, aigw_target_t *t, const aigw_fetch_t *f,
                        aigw_upstream_sink_t *s) {
  aigw_upstream_t *u = exchange_new(loop);
  if (u == NULL) return AIGW_ENOMEM_REQ;
  u->sink = s;
  s->up = u;
  u->t = t;
  u->method = method_number(f->method);
  u->no_reuse = !f->keepalive;
  if (f->target_timeouts) {
    u->connect_ms = t->connect_ms;
    u->read_ms = t->read_ms;
  }
  u->body = f->body;
  u->blen = f->body ? f->blen : 0;
  exchange_init(u, f->timeout_ms);
  const char *why = NULL;
  int rc = aigw__up_build_fetch_head(u, f, &why);
  if (rc == AIGW_EHEAD_REFUSED) {
    char msg[128];
    snprintf(msg, sizeof msg, "bad request head: %s", why);
    aigw__up_fail(u, 500, "internal_error", "internal error in the gateway", msg);
    return 0;
  }
  if (rc != 0) {
    aigw__up_fail(u, 503, "no_memory", "no memory", "no memory");
    return 0;
  }
  exchange_go(u, f->keepalive);
  return 0;
}
