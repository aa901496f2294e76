/* http_conn.h -- a client connection of the HTTP/1.1 server, and the request
 * it is serving.
 *
 * A connection serves one request at a time; pipelined requests wait in the
 * read buffer (the parser is paused) until the current response has been
 * queued, so responses go out in order. Header names and values are kept as
 * offsets into the connection's read buffer: no copy per header. */
#ifndef AIGW_HTTP_CONN_H
#define AIGW_HTTP_CONN_H

#include <llhttp.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>

#include "base/buf.h"
#include "loop/loop.h"

#define AIGW_MAX_HEADERS 128
#define AIGW_REQUEST_ID_MAX 64

typedef struct aigw_upstream_s aigw_upstream_t;
typedef struct aigw_conn_s aigw_conn_t;

/* A listening socket of a loop (listener.c). */
typedef struct aigw_listener_s {
  uv_tcp_t tcp;
  aigw_loop_t *loop;
  int admin;
} aigw_listener_t;

/* Opens a listening socket with SO_REUSEPORT on the loop (listener.c);
 * returns 0 or a negative code. */
int aigw__listener_open(aigw_loop_t *loop, aigw_listener_t *l, const char *addr, int admin);

typedef struct {
  uint32_t name, name_len, value, value_len; /* offsets into conn->rbuf */
} aigw_hdr_t;

typedef struct aigw_req_s {
  struct aigw_conn_s *conn;
  uint32_t url, url_len;
  uint32_t path_len; /* url up to '?' */
  uint16_t nhdrs;
  uint8_t method; /* llhttp_method_t */
  uint8_t http_minor;
  uint8_t keepalive : 1;
  uint8_t expect_continue : 1;
  uint8_t headers_done : 1;
  uint8_t complete : 1;    /* message complete: handed to Lua */
  uint8_t responded : 1;   /* response head queued */
  uint8_t chunked_out : 1; /* response body is chunk-encoded by us */
  uint8_t anthropic : 1;   /* errors use Anthropic's envelope */
  uint8_t in_header_field : 1;
  uint8_t has_date : 1;         /* the head being sent has its own Date */
  uint8_t logged : 1;           /* the log phase has run */
  uint8_t filter_headers : 1;   /* run the header_filter phase on the response */
  uint8_t filter_body : 1;      /* a plugin asked for the body_filter phase */
  uint8_t can_filter_body : 1;  /* detached (spec) requests: a body_filter exists */
  uint8_t observe_body : 1;     /* body_filter sees the body; the original bytes go out */
  uint8_t plugin_body : 1;      /* a plugin called filter_body(): plugin body filters run */
  uint8_t tap_usage : 1;        /* observe_body: only the answer's "usage" member, at its end */
  uint8_t filter_errors : 1;    /* run header_filter on upstream error statuses (>= 400) */
  uint8_t dispatched : 1;       /* handed to Lua (or answered in C) */
  uint8_t reading_body : 1;     /* dispatched at its head, its body asked for */
  uint8_t route_after_body : 1; /* the runtime's route(ctx) waits for the body */
  int status;
  aigw_buf_t body;
  uint64_t declared;         /* the body's Content-Length, if it had one */
  size_t framing;            /* chunk extension and trailer bytes read */
  size_t body_charged;       /* body capacity counted in max_buffered_bodies */
  uint64_t body_deadline;    /* loop ms the whole body must be in by; 0: none */
  const char *extra_headers; /* static header lines for an error response */
  const char *resp_lines;    /* lines Lua adds to every response head (kept in ctx) */
  uint32_t resp_lines_len;
  uint64_t head_ns; /* when an attempt's head went out (uv_hrtime), else 0 */
  uint64_t start_ms;
  char id[AIGW_REQUEST_ID_MAX + 1];
  uint8_t id_len;
  struct aigw_lthread_s *lt;          /* the coroutine running its plugin chain */
  struct aigw_lthread_s *body_waiter; /* lt, while it waits for the body (lua_body.c) */
  int ctx_ref;                        /* its ctx table, for the phases after it */
  aigw_upstream_t *up;
  aigw_hdr_t hdrs[AIGW_MAX_HEADERS];
} aigw_req_t;

struct aigw_conn_s {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_shutdown_t shutdown_req;
  llhttp_t parser;
  aigw_loop_t *loop;
  aigw_conn_t *next, *prev;
  char *rbuf;
  uint32_t rlen; /* bytes in rbuf */
  uint32_t rcap;
  uint32_t parsed; /* bytes of rbuf the parser has consumed */
  aigw_req_t *req; /* NULL while idle */
  int pending_writes;
  int closing_handles;
  uint8_t closing : 1;
  uint8_t close_after_write : 1;
  uint8_t failed : 1;    /* an error response ends this connection */
  uint8_t lingering : 1; /* half-closed, discarding input before the close */
  uint8_t paused : 1;    /* a complete request is being served */
  uint8_t reading : 1;
  uint8_t admin : 1;
  uint8_t loopback : 1;
  uint8_t in_parse : 1;      /* inside parse_more: it serves what follows */
  uint8_t write_blocked : 1; /* not reading: too many answers unwritten */
  uint8_t posted : 1;        /* on the worker's list to parse next turn */
  aigw_conn_t *posted_next;
  uint8_t timer_kind;
  uint64_t deadline;  /* when the current wait times out; 0: none */
  uint64_t timer_due; /* when the libuv timer is set to fire */
  struct sockaddr_storage peer;
};

/* Accepts a new connection on the listener (uv_connection_cb glue). */
void aigw_conn_accept(aigw_listener_t *l);

/* Closes the connection now; any upstream request is aborted. */
void aigw_conn_close(aigw_conn_t *c);

/* Frees a request parked on the loop's free list (at the loop's end). */
void aigw__request_destroy(void *r);

/* Closes the connection if it is idle between requests (for draining). */
void aigw_conn_close_if_idle(aigw_conn_t *c);

/* --- responses (http_response.c) --- */

/* Queues a whole response: status, extra header lines ("Name: v\r\n"...,
 * may be NULL), body. Copies what it needs. Ends the request. A head whose
 * lines fail the check of header_lines.h is not sent: a 500 goes instead. */
void aigw_respond(aigw_req_t *r, int status, const char *headers, size_t hlen, const char *body,
                  size_t blen);
/* Queues an error in the envelope of the request's API style (OpenAI or
 * Anthropic), with the request id. */
void aigw_respond_error(aigw_req_t *r, int status, const char *code, const char *message);

/* Streaming responses are built into write buffers (aigw_wbuf_t), one per
 * read of the upstream, and each buffer is one write. */
typedef struct aigw_wbuf_s aigw_wbuf_t;
aigw_wbuf_t *aigw_wbuf_new(aigw_conn_t *c, size_t cap);
int aigw_wbuf_append(aigw_wbuf_t **b, const char *p, size_t n);
/* Queues the buffer on the connection; takes ownership. */
void aigw_wbuf_send(aigw_wbuf_t *b);
void aigw_wbuf_discard(aigw_wbuf_t *b);
static inline int aigw_wbuf_append_str(aigw_wbuf_t **b, const char *s) {
  return aigw_wbuf_append(b, s, strlen(s));
}

/* Appends the response head to *b (created when NULL): status line, the
 * caller's header lines, then ours. content_length >= 0 is sent as is; -1
 * means chunked (close-delimited for HTTP/1.0 clients); -2 means the
 * response has no body and no framing header (204, 304, HEAD). parsed: the
 * lines are an upstream's as llhttp parsed them in strict mode (token
 * names, no control byte in a value), so they are not checked again; any
 * other lines, the reason and r->resp_lines are (header_lines.h). Returns
 * AIGW_EHEAD_REFUSED, with nothing appended or committed, for a head that
 * fails: the caller answers with an error instead. */
int aigw_respond_head(aigw_req_t *r, aigw_wbuf_t **b, int status, const char *reason,
                      size_t reason_len, const char *headers, size_t hlen, int64_t content_length,
                      int parsed);
/* Appends one body piece, chunk-framed when the response is chunked. */
int aigw_respond_body(aigw_req_t *r, aigw_wbuf_t **b, const char *p, size_t n);
/* Finishes the response (terminal chunk if chunked) and ends the request. */
void aigw_respond_end(aigw_req_t *r, aigw_wbuf_t **b);

/* The reason phrase of a status; the error `type` of the envelope. */
const char *aigw_http_reason(int status);
const char *aigw_error_type(int status, int anthropic);

/* Ends the connection after its last write (lingering after errors). */
void aigw__conn_end(aigw_conn_t *c);

/* A write to the client completed (progress: the send deadline moves on,
 * a connection held back by unread answers may resume). */
void aigw__conn_wrote(aigw_conn_t *c);
/* The first of a burst of writes was queued (the send deadline starts). */
void aigw__conn_queued(aigw_conn_t *c);

/* Bytes queued to the client and not yet written (for backpressure). */
size_t aigw_conn_write_queue(const aigw_conn_t *c);

/* The request has finished (response fully queued): run the log phase,
 * release Lua state, and move on to the next pipelined request. */
void aigw__request_finish(aigw_req_t *r);

/* Lua asks for the body of a request it was handed at its head: reading
 * starts (the interim 100 goes out if the client expects it). Returns 1 if
 * the body is already complete, else 0: aigw_lua_body_ready(r) is called
 * when it is, or the request ends (413, 408, client gone). Never parses or
 * calls back before returning. */
int aigw_conn_read_body(aigw_req_t *r);

/* Once a request's head is parsed (path_len set, url its target): whether
 * its path answers in Anthropic's envelope, and its id, the client's
 * x-request-id when that is a valid one, else a new one. */
void aigw__req_identify(aigw_req_t *r, const char *url);

/* Header lookup (case-insensitive); returns 1 and the value when found. */
int aigw_req_find_header(const aigw_req_t *r, const char *name, size_t nlen, const char **value,
                         size_t *vlen);

#endif
