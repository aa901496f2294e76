/* http_response.c -- writing responses to a client connection.
 *
 * Every response goes out through aigw_wbuf_t: one heap block holding the
 * uv_write_t and the bytes, so each piece is one write with one allocation,
 * freed in the write callback. The head carries x-request-id, Date,
 * framing and Connection; callers add their own header lines. */
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/errors.h"
#include "base/header_lines.h"
#include "base/log.h"
#include "http/http_conn.h"
#include "http/http_hooks.h"

struct aigw_wbuf_s {
  uv_write_t wr;
  aigw_conn_t *conn;
  size_t len, cap;
  char data[];
};

/* Client write queue below this: a paused upstream may read again. */
#define AIGW_CLIENT_LOW_WATER (256 * 1024)

const char *aigw_http_reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 529: return "Overloaded";
    default: return "Unknown";
  }
}

/* --- write buffers --- */

aigw_wbuf_t *aigw_wbuf_new(aigw_conn_t *c, size_t cap) {
  if (cap < 512) cap = 512;
  aigw_wbuf_t *b = aigw_try_malloc(sizeof *b + cap);
  if (b == NULL) return NULL;
  b->conn = c;
  b->len = 0;
  b->cap = cap;
  return b;
}

int aigw_wbuf_append(aigw_wbuf_t **bp, const char *p, size_t n) {
  aigw_wbuf_t *b = *bp;
  if (b->len + n > b->cap) {
    size_t cap = b->cap * 2;
    while (cap < b->len + n) cap *= 2;
    aigw_wbuf_t *nb = aigw_try_realloc(b, sizeof *b + cap);
    if (nb == NULL) return AIGW_ENOMEM_REQ;
    nb->cap = cap;
    *bp = b = nb;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

void aigw_wbuf_discard(aigw_wbuf_t *b) { aigw_free(b); }

static void on_write(uv_write_t *wr, int status) {
  aigw_wbuf_t *b = wr->data;
  aigw_conn_t *c = b->conn;
  aigw_free(b);
  c->pending_writes--;
  if (c->closing) return;
  if (status < 0) {
    aigw_log_debug("client write: %s", uv_strerror(status));
    aigw_conn_close(c);
    return;
  }
  if (c->pending_writes == 0 && (c->close_after_write || (c->req == NULL && c->loop->draining))) {
    aigw__conn_end(c);
    return;
  }
  if (c->req && c->req->up && c->tcp.write_queue_size < AIGW_CLIENT_LOW_WATER)
    aigw_http_hooks.upstream_drained(c->req->up);
  aigw__conn_wrote(c);
}

void aigw_wbuf_send(aigw_wbuf_t *b) {
  aigw_conn_t *c = b->conn;
  if (c->closing || b->len == 0) {
    aigw_free(b);
    return;
  }
  uv_buf_t ub = uv_buf_init(b->data, (unsigned)b->len);
  /* Nothing queued: the bytes go out now if the socket takes them. A write
   * request that completes at once still costs libuv an epoll_ctl (its
   * drain re-arms the watcher), one syscall per response. When the
   * connection ends after this write, the callback's path is taken: it
   * ends the connection once the last byte is out. */
  if (c->pending_writes == 0 && !c->close_after_write && !c->loop->draining) {
    int n = uv_try_write((uv_stream_t *)&c->tcp, &ub, 1);
    if (n == (int)b->len) {
      aigw_free(b);
      return;
    }
    if (n > 0) ub = uv_buf_init(b->data + n, (unsigned)(b->len - (size_t)n));
  }
  b->wr.data = b;
  int rc = uv_write(&b->wr, (uv_stream_t *)&c->tcp, &ub, 1, on_write);
  if (rc < 0) {
    aigw_free(b);
    aigw_conn_close(c);
    return;
  }
  c->pending_writes++;
  /* The send timeout measures progress: queueing more does not extend it. */
  if (c->pending_writes == 1) aigw__conn_queued(c);
}

/* --- heads --- */

/* A head carrying a line the core did not make and would not write (CR, LF
 * or NUL where they end a line early, a name that is not a token) is
 * refused whole, before any byte of it is queued: the request gets a 500
 * instead. That 500 carries only lines the core makes, so the sources of
 * the refused head are dropped first: the lines Lua adds to every head, the
 * static error lines, and the header filter (which could make them again). */
static int refuse_head(aigw_req_t *r, const char *why) {
  aigw_log_error("request %s: refused response head: %s", r->id, why);
  r->resp_lines = NULL;
  r->resp_lines_len = 0;
  r->extra_headers = NULL;
  r->filter_headers = 0;
  return AIGW_EHEAD_REFUSED;
}

/* Returns 0, AIGW_ENOMEM_REQ, or AIGW_EHEAD_REFUSED with nothing appended.
 * parsed: the caller's lines are an upstream's as llhttp parsed them. */
static int append_head(aigw_wbuf_t **b, aigw_req_t *r, int status, const char *reason,
                       size_t reason_len, const char *headers, size_t hlen, int64_t content_length,
                       int keep, int parsed) {
  aigw_conn_t *c = r->conn;
  const char *why = headers && !parsed ? aigw_header_lines_check(headers, hlen) : NULL;
  if (why == NULL && r->resp_lines_len)
    why = aigw_header_lines_check(r->resp_lines, r->resp_lines_len);
  if (why == NULL && reason) why = aigw_header_value_check(reason, reason_len);
  if (__builtin_expect(why != NULL, 0)) return refuse_head(r, why);
  int rc = 0;
  if (reason == NULL) {
    reason = aigw_http_reason(status);
    reason_len = strlen(reason);
  }
  char num[24];
  size_t k = aigw_u64toa((unsigned)status, num);
  rc |= aigw_wbuf_append(b, "HTTP/1.1 ", 9);
  rc |= aigw_wbuf_append(b, num, k);
  rc |= aigw_wbuf_append(b, " ", 1);
  rc |= aigw_wbuf_append(b, reason, reason_len);
  rc |= aigw_wbuf_append(b, "\r\n", 2);
  if (headers && hlen) rc |= aigw_wbuf_append(b, headers, hlen);
  if (r->resp_lines_len) rc |= aigw_wbuf_append(b, r->resp_lines, r->resp_lines_len);
  if (!r->has_date) rc |= aigw_wbuf_append(b, aigw_loop_date(c->loop), AIGW_DATE_LEN);
  rc |= aigw_wbuf_append(b, "x-request-id: ", 14);
  rc |= aigw_wbuf_append(b, r->id, r->id_len);
  rc |= aigw_wbuf_append(b, "\r\n", 2);
  if (content_length >= 0) {
    k = aigw_u64toa((unsigned long long)content_length, num);
    rc |= aigw_wbuf_append(b, "Content-Length: ", 16);
    rc |= aigw_wbuf_append(b, num, k);
    rc |= aigw_wbuf_append(b, "\r\n", 2);
  } else if (content_length == -1 && r->chunked_out) {
    rc |= aigw_wbuf_append_str(b, "Transfer-Encoding: chunked\r\n");
  }
  if (!keep) rc |= aigw_wbuf_append_str(b, "Connection: close\r\n");
  else if (r->http_minor == 0) rc |= aigw_wbuf_append_str(b, "Connection: keep-alive\r\n");
  rc |= aigw_wbuf_append(b, "\r\n", 2);
  return rc ? AIGW_ENOMEM_REQ : 0;
}

static int keep_alive(aigw_req_t *r) {
  aigw_conn_t *c = r->conn;
  /* A request answered before its body was read ends its connection. */
  return r->keepalive && r->complete && !c->loop->draining && !c->close_after_write;
}

void aigw_respond(aigw_req_t *r, int status, const char *headers, size_t hlen, const char *body,
                  size_t blen) {
  aigw_conn_t *c = r->conn;
  if (r->responded) return;
  int keep = keep_alive(r);
  int head_only = r->method == HTTP_HEAD || status == 204 || status == 304;
  aigw_wbuf_t *b = aigw_wbuf_new(c, 256 + hlen + (head_only ? 0 : blen));
  if (b == NULL) {
    r->responded = 1;
    aigw_conn_close(c);
    return;
  }
  int rc = append_head(&b, r, status, NULL, 0, headers, hlen,
                       status == 204 || status == 304 ? -2 : (int64_t)blen, keep, 0);
  if (rc == AIGW_EHEAD_REFUSED) {
    /* The 500 is made of the core's own lines only (see refuse_head). */
    aigw_wbuf_discard(b);
    aigw_respond_error(r, 500, "internal_error", "internal error in the gateway");
    return;
  }
  r->responded = 1;
  r->status = status;
  if (!keep) r->keepalive = 0;
  if (!head_only && blen) rc |= aigw_wbuf_append(&b, body, blen);
  if (rc) {
    aigw_wbuf_discard(b);
    aigw_conn_close(c);
    return;
  }
  aigw_wbuf_send(b);
  if (!c->closing) aigw__request_finish(r);
}

/* JSON string body, escaped. */
static void json_escape(aigw_buf_t *o, const char *s) {
  static const char hex[] = "0123456789abcdef";
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      char e[2] = {'\\', (char)ch};
      aigw_buf_append(o, e, 2);
    } else if (ch < 0x20) {
      char e[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
      aigw_buf_append(o, e, 6);
    } else {
      aigw_buf_append(o, s, 1);
    }
  }
}

const char *aigw_error_type(int status, int anthropic) {
  switch (status) {
    case 400:
    case 405:
    case 408:
    case 417:
    case 422:
    case 431:
    case 505: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return anthropic ? "request_too_large" : "invalid_request_error";
    case 429: return "rate_limit_error";
    case 503: return anthropic ? "overloaded_error" : "service_unavailable";
    case 504: return anthropic ? "timeout_error" : "timeout";
    default: return anthropic ? "api_error" : "server_error";
  }
}

void aigw_respond_error(aigw_req_t *r, int status, const char *code, const char *message) {
  aigw_buf_t o = {0};
  const char *type = aigw_error_type(status, r->anthropic);
  if (r->anthropic) {
    aigw_buf_append_str(&o, "{\"type\":\"error\",\"error\":{\"type\":\"");
    aigw_buf_append_str(&o, type);
    aigw_buf_append_str(&o, "\",\"message\":\"");
    json_escape(&o, message);
    aigw_buf_append_str(&o, "\"},\"request_id\":\"");
  } else {
    aigw_buf_append_str(&o, "{\"error\":{\"message\":\"");
    json_escape(&o, message);
    aigw_buf_append_str(&o, "\",\"type\":\"");
    aigw_buf_append_str(&o, type);
    aigw_buf_append_str(&o, "\",\"code\":\"");
    json_escape(&o, code);
    aigw_buf_append_str(&o, "\",\"param\":null,\"request_id\":\"");
  }
  aigw_buf_append(&o, r->id, r->id_len);
  aigw_buf_append_str(&o, r->anthropic ? "\"}\n" : "\"}}\n");
  static const char ct[] = "Content-Type: application/json\r\n";
  char hdrs[256 + AIGW_REQUEST_ID_MAX];
  /* Anthropic's SDKs read the id from request-id. */
  int hlen =
      r->anthropic
          ? snprintf(hdrs, sizeof hdrs, "%srequest-id: %.*s\r\n%s", ct, (int)r->id_len, r->id,
                     r->extra_headers ? r->extra_headers : "")
          : snprintf(hdrs, sizeof hdrs, "%s%s", ct, r->extra_headers ? r->extra_headers : "");
  if (o.data == NULL || hlen < 0 || (size_t)hlen >= sizeof hdrs) {
    aigw_buf_free(&o);
    aigw_conn_close(r->conn);
    return;
  }
  /* An error made here after the plugin chain ran (an upstream failure, a
   * plugin error) goes through header_filter too, so that plugins adding
   * headers to every response (CORS) see it. */
  const char *h = hdrs;
  size_t hl = (size_t)hlen;
  int st = status;
  if (r->filter_headers && r->lt) {
    int rc = aigw_http_hooks.header_filter(r, &st, &h, &hl, 0, NULL, 0);
    if (rc == 1) {
      aigw_buf_free(&o);
      aigw_http_hooks.respond_exit(r);
      return;
    }
    if (rc < 0) {
      st = status;
      h = hdrs;
      hl = (size_t)hlen;
    }
  }
  aigw_respond(r, st, h, hl, o.data, o.len);
  aigw_buf_free(&o);
}

/* --- streaming --- */

int aigw_respond_head(aigw_req_t *r, aigw_wbuf_t **b, int status, const char *reason,
                      size_t reason_len, const char *headers, size_t hlen, int64_t content_length,
                      int parsed) {
  aigw_conn_t *c = r->conn;
  int keep = keep_alive(r);
  if (content_length == -1) {
    if (r->http_minor >= 1) r->chunked_out = 1;
    else keep = 0; /* HTTP/1.0: the body ends when the connection does */
  }
  if (*b == NULL) *b = aigw_wbuf_new(c, 512 + hlen);
  int rc = *b ? append_head(b, r, status, reason, reason_len, headers, hlen, content_length, keep,
                            parsed)
              : AIGW_ENOMEM_REQ;
  if (rc == AIGW_EHEAD_REFUSED) {
    /* Nothing was queued: the caller can still answer with an error. */
    r->chunked_out = 0;
    return rc;
  }
  r->responded = 1;
  r->status = status;
  if (!keep) r->keepalive = 0;
  return rc;
}

int aigw_respond_body(aigw_req_t *r, aigw_wbuf_t **b, const char *p, size_t n) {
  if (n == 0) return 0;
  if (*b == NULL) {
    *b = aigw_wbuf_new(r->conn, n + 16);
    if (*b == NULL) return AIGW_ENOMEM_REQ;
  }
  int rc = 0;
  if (r->chunked_out) {
    static const char hex[] = "0123456789abcdef";
    char line[20];
    int k = 0;
    for (int shift = 60; shift >= 0; shift -= 4)
      if ((n >> shift) || k || shift == 0) line[k++] = hex[(n >> shift) & 15];
    line[k++] = '\r';
    line[k++] = '\n';
    rc |= aigw_wbuf_append(b, line, (size_t)k);
  }
  rc |= aigw_wbuf_append(b, p, n);
  if (r->chunked_out) rc |= aigw_wbuf_append(b, "\r\n", 2);
  return rc;
}

void aigw_respond_end(aigw_req_t *r, aigw_wbuf_t **b) {
  if (r->chunked_out) {
    if (*b == NULL) *b = aigw_wbuf_new(r->conn, 16);
    if (*b == NULL || aigw_wbuf_append(b, "0\r\n\r\n", 5)) {
      if (*b) aigw_wbuf_discard(*b);
      *b = NULL;
      aigw_conn_close(r->conn);
      return;
    }
  }
  aigw_conn_t *c = r->conn;
  if (*b) aigw_wbuf_send(*b);
  *b = NULL;
  if (!c->closing) aigw__request_finish(r);
}
