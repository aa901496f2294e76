/* http_conn.c -- client connections of the HTTP/1.1 server: reading, parsing
 * with llhttp, limits, timeouts, keep-alive and pipelining.
 *
 * Ownership: a connection owns its read buffer (taken from the worker's free
 * list only while a request is in progress), its current request, and through
 * the request any upstream exchange. The connection is freed in the close
 * callback of its last libuv handle (tcp and timer). */
#include "http/http_conn.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/addr.h"
#include "base/alloc.h"
#include "base/errors.h"
#include "base/log.h"
#include "base/request_id.h"
#include "http/http_hooks.h"

enum { TIMER_NONE, TIMER_IDLE, TIMER_HEADER, TIMER_BODY, TIMER_SEND, TIMER_LINGER };

/* How long a connection closed after an error keeps draining client input. */
#define LINGER_MS 2000

/* Answers queued to a client and not yet written, past which its next
 * pipelined request waits (nginx and HAProxy wait for the whole answer). */
#define PIPELINE_MAX_QUEUED (64 * 1024)

static const llhttp_settings_t *parser_settings(void);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void parse_more(aigw_conn_t *c);

aigw_http_hooks_t aigw_http_hooks;

static void arm_timer(aigw_conn_t *c, int kind);

/* --- lifetime --- */

static void on_handle_closed(uv_handle_t *h) {
  aigw_conn_t *c = h->data;
  if (--c->closing_handles > 0) return;
  aigw_loop_t *loop = c->loop;
  aigw_free(c);
  if (loop->draining == 1 && loop->nconns == 0 && loop->drained) loop->drained(loop);
}

static void release_rbuf(aigw_conn_t *c) {
  if (c->rbuf == NULL) return;
  if (c->rcap == AIGW_RBUF_SIZE) aigw_rbuf_put(c->loop, c->rbuf);
  else aigw_free(c->rbuf);
  c->rbuf = NULL;
  c->rlen = c->rcap = c->parsed = 0;
}

/* Bodies up to this size keep their buffer when the request is recycled. */
#define KEEP_BODY_CAP (64 * 1024)

void aigw__request_destroy(void *p) {
  aigw_req_t *r = p;
  aigw_buf_free(&r->body);
  aigw_free(r);
}

static void body_uncharge(aigw_req_t *r);

static void request_free(aigw_req_t *r) {
  if (r->up) aigw_http_hooks.upstream_abort(r->up);
  r->up = NULL;
  aigw_http_hooks.request_release(r);
  body_uncharge(r);
  aigw_loop_t *loop = r->conn->loop;
  if (r->body.cap > KEEP_BODY_CAP) aigw_buf_free(&r->body);
  if (!aigw_free_push(&loop->free_reqs, r)) aigw__request_destroy(r);
}

void aigw_conn_close(aigw_conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  if (c->req) {
    /* A request cut short (client gone, upstream failing mid-response, a
     * timeout) still gets its log phase, with what it had: 499 when no
     * response was started, as nginx logs a client that closed first. */
    aigw_req_t *r = c->req;
    if (r->up) aigw_http_hooks.upstream_abort(r->up);
    if (r->status == 0) r->status = 499;
    aigw_http_hooks.log_phase(r);
    request_free(r);
    c->req = NULL;
  }
  release_rbuf(c);
  aigw_loop_t *loop = c->loop;
  if (c->posted) {
    aigw_conn_t **pp = &loop->posted;
    while (*pp != c) pp = &(*pp)->posted_next;
    *pp = c->posted_next;
    c->posted = 0;
  }
  if (c->prev) c->prev->next = c->next;
  else loop->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  loop->nconns--;
  c->closing_handles = 2;
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

void aigw_conn_close_if_idle(aigw_conn_t *c) {
  if (c->req == NULL && c->pending_writes == 0 && c->rlen == c->parsed) aigw_conn_close(c);
}

static void on_timer(uv_timer_t *t) {
  aigw_conn_t *c = t->data;
  if (c->deadline == 0) return; /* nothing is being waited for */
  uint64_t now = uv_now(&c->loop->uv);
  if (now < c->deadline) {
    /* The deadline moved later since the timer was started: sleep on. */
    uv_timer_start(&c->timer, on_timer, c->deadline - now, 0);
    c->timer_due = c->deadline;
    return;
  }
  c->deadline = 0;
  switch (c->timer_kind) {
    case TIMER_HEADER:
      aigw_log_debug("client header timeout");
      /* Nothing useful can be answered to half a request head. */
      aigw_conn_close(c);
      break;
    case TIMER_BODY:
      if (c->req && !c->req->responded) {
        aigw_log_info("client body timeout, request %s", c->req->id);
        c->req->keepalive = 0;
        aigw_respond_error(c->req, 408, "request_timeout", "client body timeout");
        c->close_after_write = 1;
        arm_timer(c, TIMER_SEND);
      } else {
        aigw_conn_close(c);
      }
      break;
    case TIMER_SEND:
      aigw_log_info("client send timeout: closing");
      aigw_conn_close(c);
      break;
    case TIMER_LINGER: aigw_conn_close(c); break;
    default: aigw_conn_close(c);
  }
}

/* Sets what the connection waits for and its deadline. Timers are lazy:
 * the libuv timer is restarted only when the new deadline is earlier than
 * the one it is set for; a later deadline is picked up when it fires. This
 * keeps the per-request cost to about one timer operation. */
static void arm_timer(aigw_conn_t *c, int kind) {
  const aigw_config_t *cf = c->loop->conf;
  uint64_t ms = 0;
  switch (kind) {
    case TIMER_IDLE: ms = cf->keepalive_timeout_ms; break;
    case TIMER_HEADER: ms = cf->client_header_timeout_ms; break;
    case TIMER_BODY: ms = cf->client_body_timeout_ms; break;
    case TIMER_SEND: ms = cf->send_timeout_ms; break;
    case TIMER_LINGER: ms = LINGER_MS; break;
    default: break;
  }
  c->timer_kind = (uint8_t)kind;
  uint64_t now = uv_now(&c->loop->uv);
  uint64_t deadline = ms ? now + ms : 0;
  /* Each gap between body reads is bounded, and so is the whole body, so a
   * client trickling a byte at a time cannot hold the connection forever. */
  if (kind == TIMER_BODY && c->req && c->req->body_deadline &&
      (deadline == 0 || c->req->body_deadline < deadline))
    deadline = c->req->body_deadline;
  c->deadline = deadline;
  if (deadline == 0) return;
  if (!uv_is_active((uv_handle_t *)&c->timer) || c->timer_due > deadline) {
    uv_timer_start(&c->timer, on_timer, deadline > now ? deadline - now : 0, 0);
    c->timer_due = deadline;
  }
}

/* Waits for kind, keeping the deadline when the connection already waits
 * for it: a deadline starts when a wait starts and moves on only with
 * progress (a write completing, body bytes arriving), never because the
 * client sent something else (bare CRLFs between requests, more pipelined
 * requests while its answers are not read). */
static void wait_for(aigw_conn_t *c, int kind) {
  if (c->timer_kind != kind || (c->deadline == 0 && kind != TIMER_NONE)) arm_timer(c, kind);
}

/* The timer that fits what the connection is waiting for now. */
static void rearm_timer(aigw_conn_t *c) {
  if (c->lingering) return;
  if (c->pending_writes > 0) wait_for(c, TIMER_SEND);
  else if (c->req == NULL) wait_for(c, c->rlen > c->parsed ? TIMER_HEADER : TIMER_IDLE);
  else if (c->req->complete || (c->req->dispatched && !c->req->reading_body))
    wait_for(c, TIMER_NONE);
  else if (c->req->headers_done) wait_for(c, TIMER_BODY);
  else wait_for(c, TIMER_HEADER);
}

/* --- accept --- */

void aigw_conn_accept(aigw_listener_t *l) {
  aigw_loop_t *loop = l->loop;
  aigw_conn_t *c = aigw_calloc(1, sizeof *c);
  c->loop = loop;
  uv_tcp_init(&loop->uv, &c->tcp);
  uv_timer_init(&loop->uv, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->next = loop->conns;
  if (loop->conns) loop->conns->prev = c;
  loop->conns = c;
  loop->nconns++;
  if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&c->tcp) != 0) {
    aigw_conn_close(c);
    return;
  }
  if (loop->draining || loop->nconns > loop->max_conns) {
    if (!loop->draining)
      aigw_log_warn("connection cap (%d per worker) reached: refusing", loop->max_conns);
    aigw_conn_close(c);
    return;
  }
  c->admin = (uint8_t)l->admin;
  int len = sizeof c->peer;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &len) == 0)
    c->loopback = (uint8_t)aigw_sockaddr_is_loopback((struct sockaddr *)&c->peer);
  uv_tcp_nodelay(&c->tcp, 1);
  llhttp_init(&c->parser, HTTP_REQUEST, parser_settings());
  c->parser.data = c;
  c->reading = 1;
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  /* The first request head must arrive within the header timeout. */
  arm_timer(c, TIMER_HEADER);
}

/* --- reading --- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  aigw_conn_t *c = h->data;
  if (c->rbuf == NULL) {
    c->rbuf = aigw_rbuf_get(c->loop);
    c->rcap = AIGW_RBUF_SIZE;
    c->rlen = c->parsed = 0;
  }
  if (c->rlen == c->rcap) {
    /* Only a request head may need more than one buffer; its size is
     * bounded by max_header_size (checked while parsing). */
    size_t limit = c->loop->conf->max_header_size + 4096;
    if (c->paused || c->rcap >= limit) {
      buf->base = NULL;
      buf->len = 0;
      return;
    }
    size_t ncap = (size_t)c->rcap * 2 > limit ? limit : (size_t)c->rcap * 2;
    char *nb = aigw_try_malloc(ncap);
    if (nb == NULL) {
      buf->base = NULL;
      buf->len = 0;
      return;
    }
    memcpy(nb, c->rbuf, c->rlen);
    if (c->rcap == AIGW_RBUF_SIZE) aigw_rbuf_put(c->loop, c->rbuf);
    else aigw_free(c->rbuf);
    c->rbuf = nb;
    c->rcap = (uint32_t)ncap;
  }
  buf->base = c->rbuf + c->rlen;
  buf->len = c->rcap - c->rlen;
}

static void stop_reading(aigw_conn_t *c) {
  if (c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
}

static void start_reading(aigw_conn_t *c) {
  if (!c->reading && !c->closing) {
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    c->reading = 1;
  }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  aigw_conn_t *c = s->data;
  if (c->lingering) {
    /* Discard what the client still sends until it closes or time is up. */
    if (nread < 0) aigw_conn_close(c);
    else c->rlen = c->parsed = 0;
    return;
  }
  if (nread == UV_ENOBUFS) {
    /* Buffer full: while a request is served, pipelined bytes wait in the
     * kernel (backpressure); in a request head it means the head is too big. */
    if (c->paused) {
      stop_reading(c);
    } else if (c->req && !c->req->headers_done) {
      c->req->keepalive = 0;
      aigw_respond_error(c->req, 431, "headers_too_large", "request headers too large");
      c->close_after_write = 1;
    } else {
      aigw_conn_close(c);
    }
    return;
  }
  if (nread < 0) {
    /* EOF or error: the client is gone; any upstream work is cancelled. */
    if (nread != UV_EOF) aigw_log_debug("client read: %s", uv_strerror((int)nread));
    aigw_conn_close(c);
    return;
  }
  if (nread == 0) return;
  c->rlen += (uint32_t)nread;
  if (c->paused) return; /* kept for after the current response */
  if (c->req && c->req->headers_done && !c->req->complete) arm_timer(c, TIMER_BODY);
  parse_more(c);
}

/* --- parsing --- */

static aigw_req_t *request_new(aigw_conn_t *c) {
  aigw_loop_t *loop = c->loop;
  aigw_req_t *r = aigw_free_pop(&loop->free_reqs);
  aigw_buf_t body = {0};
  if (r) body = r->body; /* a recycled request keeps its body buffer */
  else r = aigw_try_malloc(sizeof *r);
  if (r == NULL) return NULL;
  memset(r, 0, offsetof(aigw_req_t, hdrs));
  r->body.data = body.data;
  r->body.cap = body.cap;
  r->conn = c;
  r->ctx_ref = -2; /* LUA_NOREF */
  r->start_ms = uv_now(&c->loop->uv);
  return r;
}

static int fail(aigw_conn_t *c, int status, const char *code, const char *msg) {
  aigw_req_t *r = c->req;
  if (r == NULL) {
    r = c->req = request_new(c);
    if (r == NULL) {
      aigw_conn_close(c);
      return HPE_USER;
    }
  }
  r->keepalive = 0;
  c->close_after_write = 1;
  c->failed = 1;
  if (!r->responded) {
    if (r->id_len == 0) r->id_len = (uint8_t)aigw_request_id_new(r->id);
    aigw_respond_error(r, status, code, msg);
  }
  return HPE_USER;
}

static int on_message_begin(llhttp_t *p) {
  aigw_conn_t *c = p->data;
  c->req = request_new(c);
  if (c->req == NULL) {
    aigw_conn_close(c);
    return HPE_USER;
  }
  if (c->timer_kind != TIMER_HEADER) arm_timer(c, TIMER_HEADER);
  return 0;
}

/* The method is known from the request line on: a head refused later (a bad
 * header, too large) is still answered as a HEAD's, without a body. */
static int on_method_complete(llhttp_t *p) {
  aigw_conn_t *c = p->data;
  c->req->method = (uint8_t)llhttp_get_method(p);
  return 0;
}

static int check_head_size(aigw_conn_t *c, const char *at, size_t len) {
  if ((size_t)(at + len - c->rbuf) > c->loop->conf->max_header_size)
    return fail(c, 431, "headers_too_large", "request headers too large");
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  aigw_conn_t *c = p->data;
  aigw_req_t *r = c->req;
  if (r->url_len == 0) r->url = (uint32_t)(at - c->rbuf);
  r->url_len += (uint32_t)len;
  return check_head_size(c, at, len);
}

/* Bytes of a chunked body that are not body (chunk extensions, trailers)
 * count against max_body_size with it: they are read and parsed too. */
static int count_framing(aigw_conn_t *c, size_t len) {
  aigw_req_t *r = c->req;
  r->framing += len;
  if (r->body.len + r->framing > c->loop->conf->max_body_size)
    return fail(c, 413, "request_too_large", "request body too large");
  return 0;
}

static int on_chunk_extension(llhttp_t *p, const char *at, size_t len) {
  (void)at;
  return count_framing(p->data, len);
}

static int has_ctl(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '\r' || ch == '\n' || ch == 0) return 1;
  }
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  aigw_conn_t *c = p->data;
  aigw_req_t *r = c->req;
  /* Chunked trailers are not headers (RFC 9110 6.5.1): never merged in,
   * but counted with the body they came with. */
  if (r->headers_done) return count_framing(c, len);
  if (!r->in_header_field) {
    if (r->nhdrs == AIGW_MAX_HEADERS)
      return fail(c, 431, "headers_too_large", "too many request headers");
    aigw_hdr_t *h = &r->hdrs[r->nhdrs++];
    h->name = (uint32_t)(at - c->rbuf);
    h->name_len = 0;
    h->value = h->value_len = 0;
    r->in_header_field = 1;
  }
  r->hdrs[r->nhdrs - 1].name_len += (uint32_t)len;
  return check_head_size(c, at, len);
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  aigw_conn_t *c = p->data;
  aigw_req_t *r = c->req;
  if (r->headers_done) {
    if (has_ctl(at, len)) return fail(c, 400, "bad_request", "invalid trailer");
    return count_framing(c, len);
  }
  aigw_hdr_t *h = &r->hdrs[r->nhdrs - 1];
  if (r->in_header_field || (h->value_len == 0 && len > 0)) {
    /* The first piece (llhttp may give an empty one first, anywhere). Only
     * ':' and spaces lie between a name and its value's first byte: a line
     * end there is an empty value folded onto the next line
     * ("X:\r\n Content-Length: 5"). */
    r->in_header_field = 0;
    h->value = (uint32_t)(at - c->rbuf);
    if (len > 0 &&
        memchr(c->rbuf + h->name + h->name_len, '\n', h->value - (h->name + h->name_len)))
      return fail(c, 400, "bad_request", "obsolete line folding in a header value");
  } else if (at != c->rbuf + h->value + h->value_len) {
    /* The request head is contiguous in rbuf, so a value that resumes
     * elsewhere was folded over lines (obs-fold): refuse, as RFC 9112 allows. */
    return fail(c, 400, "bad_request", "obsolete line folding in a header value");
  }
  h->value_len += (uint32_t)len;
  /* obs-fold and bare CR/LF inside a value are smuggling vectors: refuse. */
  if (has_ctl(at, len)) return fail(c, 400, "bad_request", "invalid character in header value");
  return check_head_size(c, at, len);
}

static int on_header_value_complete(llhttp_t *p) {
  aigw_conn_t *c = p->data;
  c->req->in_header_field = 0;
  return 0;
}

static int name_is(const aigw_conn_t *c, const aigw_hdr_t *h, const char *name, size_t n) {
  return h->name_len == n && strncasecmp(c->rbuf + h->name, name, n) == 0;
}

int aigw_req_find_header(const aigw_req_t *r, const char *name, size_t nlen, const char **value,
                         size_t *vlen) {
  const aigw_conn_t *c = r->conn;
  for (int i = 0; i < r->nhdrs; i++) {
    const aigw_hdr_t *h = &r->hdrs[i];
    if (name_is(c, h, name, nlen)) {
      const char *v = c->rbuf + h->value;
      size_t n = h->value_len;
      while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
      *value = v;
      *vlen = n;
      return 1;
    }
  }
  return 0;
}

/* Whether a body of known length has (about) arrived with its head, so
 * that it can be read before Lua runs, as any body used to be: the end of
 * the last header line is a lower bound of the head's end, so this may say
 * yes for a body a few bytes short (then it is read first, as before), never
 * no for one that is all here (which would cost one more parse call). */
static int body_is_here(const aigw_conn_t *c, const aigw_req_t *r, const llhttp_t *p) {
  if (!(p->flags & F_CONTENT_LENGTH) || (p->flags & F_CHUNKED) || r->expect_continue) return 0;
  uint32_t head_end = r->url + r->url_len;
  if (r->nhdrs) head_end = r->hdrs[r->nhdrs - 1].value + r->hdrs[r->nhdrs - 1].value_len;
  return c->rlen >= head_end && c->rlen - head_end >= p->content_length + 4;
}

static int is_anthropic_path(const char *p, size_t n) {
  static const char s1[] = "/messages", s2[] = "/messages/count_tokens";
  return (n >= sizeof s1 - 1 && memcmp(p + n - (sizeof s1 - 1), s1, sizeof s1 - 1) == 0) ||
         (n >= sizeof s2 - 1 && memcmp(p + n - (sizeof s2 - 1), s2, sizeof s2 - 1) == 0);
}

void aigw__req_identify(aigw_req_t *r, const char *url) {
  r->anthropic = (uint8_t)is_anthropic_path(url, r->path_len);
  const char *v;
  size_t vlen;
  if (aigw_req_find_header(r, "x-request-id", 12, &v, &vlen) && aigw_request_id_valid(v, vlen)) {
    memcpy(r->id, v, vlen);
    r->id[vlen] = '\0';
    r->id_len = (uint8_t)vlen;
  } else {
    r->id_len = (uint8_t)aigw_request_id_new(r->id);
  }
}

static int on_headers_complete(llhttp_t *p) {
  aigw_conn_t *c = p->data;
  aigw_req_t *r = c->req;
  const aigw_config_t *cf = c->loop->conf;
  r->headers_done = 1;
  r->method = (uint8_t)llhttp_get_method(p);
  r->http_minor = llhttp_get_http_minor(p);
  r->keepalive = (uint8_t)llhttp_should_keep_alive(p);
  const char *url = c->rbuf + r->url;
  const char *q = memchr(url, '?', r->url_len);
  r->path_len = q ? (uint32_t)(q - url) : r->url_len;
  aigw__req_identify(r, url);

  if (llhttp_get_http_major(p) != 1)
    return fail(c, 505, "http_version_not_supported", "HTTP version not supported");
  if (r->method == HTTP_CONNECT)
    return fail(c, 405, "method_not_allowed", "CONNECT is not supported");
  if (p->upgrade) {
    /* No protocol is switched to: the request is served as a plain one and
     * the connection ends after it, so nothing behind it (another
     * protocol's bytes) is ever read as a request. */
    p->upgrade = 0;
    r->keepalive = 0;
  }
  int hosts = 0;
  for (int i = 0; i < r->nhdrs; i++)
    if (name_is(c, &r->hdrs[i], "host", 4)) hosts++;
  if (hosts > 1 || (hosts == 0 && r->http_minor >= 1))
    return fail(c, 400, "bad_request", hosts ? "more than one Host header" : "missing Host header");
  if (p->flags & F_TRANSFER_ENCODING) {
    /* Only "chunked", once: any other coding would reach the upstream
     * undecoded under a Content-Length of our making. */
    int tes = 0;
    for (int i = 0; i < r->nhdrs; i++) {
      const aigw_hdr_t *h = &r->hdrs[i];
      if (!name_is(c, h, "transfer-encoding", 17)) continue;
      tes++;
      const char *tv = c->rbuf + h->value;
      size_t tl = h->value_len;
      while (tl && (tv[tl - 1] == ' ' || tv[tl - 1] == '\t')) tl--;
      if (tes > 1 || tl != 7 || strncasecmp(tv, "chunked", 7) != 0)
        return fail(c, 501, "not_implemented", "unsupported Transfer-Encoding");
    }
    /* HTTP/1.0 with Transfer-Encoding: framing is suspect (RFC 9112 6.1). */
    if (r->http_minor == 0) r->keepalive = 0;
  }
  if (p->flags & F_CONTENT_LENGTH && p->content_length > cf->max_body_size)
    return fail(c, 413, "request_too_large", "request body too large");
  int has_body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
  const char *v;
  size_t vlen;
  if (aigw_req_find_header(r, "expect", 6, &v, &vlen)) {
    if (vlen != 12 || strncasecmp(v, "100-continue", 12) != 0)
      return fail(c, 417, "expectation_failed", "unsupported Expect header");
    /* The interim 100 goes out when the body is asked for: a request
     * refused at its head is never invited to send its body. */
    r->expect_continue = r->http_minor >= 1 && has_body;
  }
  if (p->flags & F_CONTENT_LENGTH) r->declared = p->content_length;
  if (has_body && !body_is_here(c, r, p)) {
    /* Lua gets the request now, and its access phase decides (gateway
     * keys, limits) before any body is read or buffered; the body is read
     * when Lua asks for it (aigw_conn_read_body). */
    c->paused = 1;
    return HPE_PAUSED;
  }
  if (cf->client_body_total_timeout_ms)
    r->body_deadline = uv_now(&c->loop->uv) + cf->client_body_total_timeout_ms;
  arm_timer(c, TIMER_BODY);
  return 0;
}

/* What every worker's request bodies hold together, against
 * max_buffered_bodies. Only growth past a request's recycled buffer is
 * counted, so small bodies never touch this shared counter. */
static _Atomic size_t bodies_buffered;

static void body_uncharge(aigw_req_t *r) {
  if (r->body_charged)
    atomic_fetch_sub_explicit(&bodies_buffered, r->body_charged, memory_order_relaxed);
  r->body_charged = 0;
}

/* Room for need bytes of body. A body grows as its bytes arrive (never to
 * what the client declares before sending it), doubling, but never past its
 * declared length. */
static int body_reserve(aigw_conn_t *c, aigw_req_t *r, size_t need) {
  if (need <= r->body.cap) return 0;
  size_t cap = r->body.cap < 4096 ? 4096 : r->body.cap * 2;
  if (r->declared && cap > r->declared) cap = (size_t)r->declared;
  if (cap < need) cap = need;
  size_t add = cap - r->body.cap;
  size_t was = atomic_fetch_add_explicit(&bodies_buffered, add, memory_order_relaxed);
  if (was + add > c->loop->conf->max_buffered_bodies) {
    atomic_fetch_sub_explicit(&bodies_buffered, add, memory_order_relaxed);
    static const char retry[] = "Retry-After: 1\r\n";
    r->extra_headers = retry;
    aigw_log_warn("request %s: max_buffered_bodies reached: refusing its body", r->id);
    return fail(c, 503, "overloaded",
                "the gateway is receiving too many request bodies; retry later");
  }
  char *b = aigw_try_realloc(r->body.data, cap);
  if (b == NULL) {
    atomic_fetch_sub_explicit(&bodies_buffered, add, memory_order_relaxed);
    return fail(c, 503, "no_memory", "no memory for the request body");
  }
  r->body.data = b;
  r->body.cap = cap;
  r->body_charged += add;
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  aigw_conn_t *c = p->data;
  aigw_req_t *r = c->req;
  if (r->body.len + r->framing + len > c->loop->conf->max_body_size)
    return fail(c, 413, "request_too_large", "request body too large");
  if (r->body.len + len > r->body.cap && body_reserve(c, r, r->body.len + len) != 0)
    return HPE_USER;
  memcpy(r->body.data + r->body.len, at, len);
  r->body.len += len;
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  aigw_conn_t *c = p->data;
  c->req->complete = 1;
  c->paused = 1;
  return HPE_PAUSED;
}

/* Filled once, read-only after: shared by every worker thread. */
static const llhttp_settings_t request_parser_settings = {
    .on_message_begin = on_message_begin,
    .on_method_complete = on_method_complete,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_extension_name = on_chunk_extension,
    .on_chunk_extension_value = on_chunk_extension,
};

static const llhttp_settings_t *parser_settings(void) { return &request_parser_settings; }

/* Drops bytes that are no longer needed: everything before the current
 * request, and body bytes already copied out. Offsets of header spans stay
 * valid because the request head is always at the start of the buffer. */
static void compact(aigw_conn_t *c) {
  if (c->req == NULL) {
    if (c->parsed == c->rlen) {
      release_rbuf(c);
    } else if (c->parsed > 0) {
      memmove(c->rbuf, c->rbuf + c->parsed, c->rlen - c->parsed);
      c->rlen -= c->parsed;
      c->parsed = 0;
    }
  } else if (c->req->headers_done && !c->req->complete && c->parsed == c->rlen) {
    /* In the body: keep the head (for header lookups), drop the body bytes. */
    uint32_t keep = c->req->url + c->req->url_len;
    for (int i = 0; i < c->req->nhdrs; i++) {
      uint32_t end = c->req->hdrs[i].value + c->req->hdrs[i].value_len;
      uint32_t nend = c->req->hdrs[i].name + c->req->hdrs[i].name_len;
      if (end > keep) keep = end;
      if (nend > keep) keep = nend;
    }
    c->rlen = c->parsed = keep;
  }
}

static int path_is(const aigw_req_t *r, const char *p, size_t n) {
  return r->path_len == n && memcmp(r->conn->rbuf + r->url, p, n) == 0;
}

/* Whether some target can take traffic (GET /ready): told by Lua
 * (lua/aigw/engine/health.lua), read by every worker. */
static atomic_int ready = 1;

__attribute__((visibility("default"), used)) void aigw_ffi_set_ready(int r) {
  atomic_store_explicit(&ready, r != 0, memory_order_relaxed);
}

static void dispatch(aigw_conn_t *c) {
  aigw_req_t *r = c->req;
  r->dispatched = 1;
  /* No client deadline while the request is served, unless answers before
   * it are still unwritten: their send deadline stands (a write that
   * completes at once has no callback to arm it again). */
  rearm_timer(c);
  /* Liveness and readiness are answered here: no Lua, no auth, so a load
   * balancer's probe costs nothing and works even if plugins misbehave. */
  if (path_is(r, "/health", 7) || path_is(r, "/ready", 6)) {
    if (r->method != HTTP_GET && r->method != HTTP_HEAD) {
      static const char allow[] = "Allow: GET, HEAD\r\n";
      r->extra_headers = allow;
      aigw_respond_error(r, 405, "method_not_allowed", "only GET and HEAD are allowed here");
      return;
    }
    static const char ct[] = "Content-Type: application/json\r\nCache-Control: no-store\r\n";
    static const char ok[] = "{\"status\":\"ok\"}\n";
    static const char down[] = "{\"status\":\"unavailable\",\"reason\":\"no healthy target\"}\n";
    if (r->path_len == 6 && !atomic_load_explicit(&ready, memory_order_relaxed)) {
      aigw_respond(r, 503, ct, sizeof ct - 1, down, sizeof down - 1);
      return;
    }
    aigw_respond(r, 200, ct, sizeof ct - 1, ok, sizeof ok - 1);
    return;
  }
  aigw_http_hooks.handle_request(r);
}

/* Parses what the read buffer holds, serving each complete request in turn.
 * A request answered at once (a probe, an error) comes back here through
 * aigw__request_finish, which only resumes the parser: the next pipelined
 * request is served by this loop, not by recursion. */
static void parse_more(aigw_conn_t *c) {
  if (c->in_parse) return;
  c->in_parse = 1;
  while (!c->closing && !c->paused && !c->write_blocked && c->parsed < c->rlen) {
    const char *start = c->rbuf + c->parsed;
    llhttp_errno_t err = llhttp_execute(&c->parser, start, c->rlen - c->parsed);
    if (c->closing) break;
    if (err == HPE_OK) {
      c->parsed = c->rlen;
      compact(c);
      break;
    }
    if (err == HPE_PAUSED) {
      c->parsed = (uint32_t)(llhttp_get_error_pos(&c->parser) - c->rbuf);
      aigw_req_t *r = c->req;
      if (!r->dispatched) {
        dispatch(c); /* a complete request, or a head (body unread) */
      } else {
        r->reading_body = 0; /* the body Lua asked for is in */
        rearm_timer(c);
        aigw_http_hooks.body_ready(r);
      }
      continue;
    }
    if (!c->failed) {
      aigw_log_debug("bad request: %s (%s)", llhttp_errno_name(err),
                     llhttp_get_error_reason(&c->parser));
      fail(c, 400, "bad_request", "malformed HTTP request");
    }
    /* The error response is queued; read no further. */
    c->parsed = c->rlen;
    stop_reading(c);
    break;
  }
  c->in_parse = 0;
  if (!c->closing && c->req == NULL && !c->write_blocked) rearm_timer(c);
}

/* Whether the answers already queued allow serving the next request: a
 * client that pipelines without reading is not read from (it blocks in its
 * own send) until its answers drain, so it can make us hold at most about
 * PIPELINE_MAX_QUEUED bytes of answers plus one response. */
static int may_serve_next(aigw_conn_t *c) { return c->tcp.write_queue_size <= PIPELINE_MAX_QUEUED; }

/* The connection is ready for its next request. */
static void next_request(aigw_conn_t *c) {
  if (!may_serve_next(c)) {
    c->write_blocked = 1;
    stop_reading(c);
    return;
  }
  c->write_blocked = 0;
  start_reading(c);
  rearm_timer(c);
  /* Pipelined requests already in the buffer are served next, in order. */
  if (c->rlen > c->parsed) parse_more(c);
}

/* The response of the current request is fully queued. */
void aigw__request_finish(aigw_req_t *r) {
  aigw_conn_t *c = r->conn;
  int keep = r->keepalive && r->complete && !c->loop->draining && !c->close_after_write;
  /* Answered before its body was read (refused at its head): the client may
   * still be sending it, so the connection lingers before it closes. */
  if (!r->complete) c->failed = 1;
  aigw_http_hooks.log_phase(r);
  request_free(r);
  c->req = NULL;
  if (!keep) {
    c->close_after_write = 1;
    stop_reading(c);
    if (c->pending_writes == 0) aigw__conn_end(c);
    return;
  }
  c->paused = 0;
  llhttp_resume(&c->parser);
  compact(c);
  if (c->in_parse) {
    /* Answered from inside the parse loop, which goes on by itself. */
    if (!may_serve_next(c)) {
      c->write_blocked = 1;
      stop_reading(c);
    }
    return;
  }
  next_request(c);
}

/* Connections whose buffered bytes must be parsed, but not from where the
 * need arose (inside Lua): they are parsed on the next loop turn. */
static void on_posted(uv_idle_t *h) {
  aigw_loop_t *loop = h->data;
  while (loop->posted) {
    aigw_conn_t *c = loop->posted;
    loop->posted = c->posted_next;
    c->posted = 0;
    c->posted_next = NULL;
    parse_more(c);
  }
  uv_idle_stop(h);
}

static void post_parse(aigw_conn_t *c) {
  aigw_loop_t *loop = c->loop;
  if (c->posted) return;
  if (!loop->posted_init) {
    uv_idle_init(&loop->uv, &loop->posted_idle);
    loop->posted_idle.data = loop;
    loop->posted_init = 1;
  }
  c->posted = 1;
  c->posted_next = loop->posted;
  loop->posted = c;
  uv_idle_start(&loop->posted_idle, on_posted);
}

int aigw_conn_read_body(aigw_req_t *r) {
  aigw_conn_t *c = r->conn;
  if (r->complete) return 1;
  if (r->reading_body || c->closing) return 0;
  r->reading_body = 1;
  if (r->expect_continue) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    aigw_wbuf_t *b = aigw_wbuf_new(c, sizeof cont);
    if (b && aigw_wbuf_append(&b, cont, sizeof cont - 1) == 0) aigw_wbuf_send(b);
    else if (b) aigw_wbuf_discard(b);
    r->expect_continue = 0;
  }
  const aigw_config_t *cf = c->loop->conf;
  if (cf->client_body_total_timeout_ms)
    r->body_deadline = uv_now(&c->loop->uv) + cf->client_body_total_timeout_ms;
  c->paused = 0;
  llhttp_resume(&c->parser);
  arm_timer(c, TIMER_BODY);
  start_reading(c);
  /* Inside the parse loop (Lua asked at once), the loop reads on; else
   * what is buffered is parsed on the next turn, never under Lua's feet. */
  if (!c->in_parse && c->rlen > c->parsed) post_parse(c);
  return 0;
}

/* A write to the client completed: the send deadline moves on with the
 * progress, and a connection held back by its unread answers may go on. */
void aigw__conn_wrote(aigw_conn_t *c) {
  if (c->write_blocked && c->tcp.write_queue_size <= PIPELINE_MAX_QUEUED / 2) {
    c->write_blocked = 0;
    if (c->pending_writes > 0) arm_timer(c, TIMER_SEND);
    next_request(c);
    return;
  }
  if (c->pending_writes > 0) arm_timer(c, TIMER_SEND);
  else rearm_timer(c);
}

/* The first write of a burst was queued: the send deadline starts. */
void aigw__conn_queued(aigw_conn_t *c) { rearm_timer(c); }

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)req;
  (void)status;
}

/* Ends a connection whose last response has been written. After an error
 * the client may still be sending (an oversized body, pipelined requests):
 * closing with unread input makes the kernel send a reset, which can
 * destroy the response before the client reads it. So such a connection
 * half-closes, reads and discards for up to LINGER_MS, then closes (like
 * nginx's lingering close). */
void aigw__conn_end(aigw_conn_t *c) {
  if (c->closing) return;
  if (!c->failed || c->lingering) {
    aigw_conn_close(c);
    return;
  }
  c->lingering = 1;
  if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
    aigw_conn_close(c);
    return;
  }
  c->rlen = c->parsed = 0;
  start_reading(c);
  arm_timer(c, TIMER_LINGER);
}

size_t aigw_conn_write_queue(const aigw_conn_t *c) { return c->tcp.write_queue_size; }
