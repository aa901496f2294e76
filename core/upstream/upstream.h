/* upstream.h -- HTTP/1.1 exchanges with upstream servers (plain or TLS).
 *
 * A target is what a provider resolves to: scheme, host, port, base path,
 * TLS settings, timeouts, keep-alive limits and fixed header edits. Targets
 * are made from Lua (lua_target.c) once per provider per VM generation, and
 * by aigw.http (cached per VM, lua_http.c).
 *
 * An exchange has one of two sinks:
 *  - the proxy sink: it belongs to the client request that started it
 *    (aigw_upstream_start) and streams the answer to that client, ending by
 *    finishing the request's response, or it is aborted by the request;
 *  - a caller's sink (aigw_upstream_fetch): the answer is collected into an
 *    aigw_upstream_sink_t the caller owns (aigw.http.request), which is told
 *    when there is something to take. */
#ifndef AIGW_UPSTREAM_H
#define AIGW_UPSTREAM_H

#include <stdint.h>

#include "base/tls.h"
#include "http/http_conn.h"

typedef struct aigw_target_s {
  int tls;
  char *host; /* for DNS, SNI and certificate checks */
  uint16_t port;
  char *base_path;   /* "/v1", no trailing slash ("" for none) */
  char *host_header; /* "Host: api.openai.com\r\n" */
  char *pool_key;    /* connections are shared by targets with one key */
  aigw_tls_ctx_t *tls_ctx;
  char *set_headers; /* "Name: value\r\n"... added to every request */
  size_t set_headers_len;
  char **drop; /* lower-case names of client headers not forwarded */
  size_t *drop_len;
  int ndrop;
  uint64_t connect_ms, read_ms, total_ms;
  int max_idle;
  uint64_t idle_ms;
} aigw_target_t;

/* Starts proxying r to target t at path (joined to the base path), with
 * body (NULL: the client's body) and extra header lines (may be NULL).
 * All pointers must stay valid until the exchange ends. On return the
 * exchange is under way, or the client already has its error response (a
 * 500 when the path or the extra lines would not make a sound head). */
void aigw_upstream_start(aigw_req_t *r, aigw_target_t *t, const char *path, size_t plen,
                         const char *body, size_t blen, const char *extra, size_t elen);

/* An attempt is a proxy exchange that may still be abandoned for another
 * target: the client's response head waits until the upstream's first body
 * byte (or the end of an answer without a body). Until then nothing has
 * reached the client, so when the exchange fails (connect, timeout, the
 * first-byte deadline, a closed or bad answer) or the upstream answers
 * with an error status (>= 400, its body held whole, at most 1 MiB), the
 * exchange ends and `failed` is called once with the outcome; the caller
 * decides what the client gets. From the first byte on, the exchange is an
 * ordinary proxy (filters, streaming, failures as for aigw_upstream_start),
 * and `failed` is never called. */
typedef struct aigw_attempt_s aigw_attempt_t;
struct aigw_attempt_s {
  void (*failed)(aigw_attempt_t *a); /* may run before aigw_upstream_attempt returns */
  uint64_t ttfb_ms;                  /* deadline for the first body byte; 0: none */
  uint64_t total_ms;                 /* the whole exchange; 0: the target's total timeout */
  /* the outcome, filled before failed() */
  int status;            /* the upstream's error status, or 0: no answer */
  int fail_status;       /* no answer: what the client would get (502, 503, 504) */
  const char *code;      /* no answer: the error code ("upstream_timeout", ...) */
  char msg[256];         /* no answer: why */
  aigw_buf_t head, body; /* error status: its header lines and body (owned by the caller) */
};

void aigw_upstream_attempt(aigw_req_t *r, aigw_target_t *t, const char *path, size_t plen,
                           const char *body, size_t blen, const char *extra, size_t elen,
                           aigw_attempt_t *a);

/* The client went away, the request is being torn down, or the caller of
 * a fetch gave up: close the upstream connection now (it is not reused)
 * and free the exchange. A sink is not notified. */
void aigw_upstream_abort(aigw_upstream_t *u);

/* Frees an exchange parked on the loop's free list (at the loop's end). */
void aigw__upstream_destroy(void *u);

/* The client's write queue has drained: resume reading the upstream. */
void aigw_upstream_client_drained(aigw_upstream_t *u);

/* --- exchanges for a caller in C (aigw.http.request) --- */

typedef struct aigw_upstream_sink_s aigw_upstream_sink_t;

/* The caller sets notify, max_body and stream, zeroes the rest, and keeps
 * the struct in place until `up` is NULL (or it aborts the exchange). */
struct aigw_upstream_sink_s {
  /* Called when the head is in (stream only), when body bytes wait
   * (stream only), at the end (eof) and on failure (err). May be called
   * before aigw_upstream_fetch returns, and never again once up is NULL. */
  void (*notify)(aigw_upstream_sink_t *s);
  size_t max_body; /* without stream: a longer body fails */
  uint8_t stream;  /* hand body bytes over as they arrive */
  /* filled by the exchange */
  aigw_upstream_t *up; /* NULL once the exchange has ended */
  int status;
  aigw_buf_t head; /* header lines "Name: value\r\n", hop-by-hop removed */
  aigw_buf_t body; /* body bytes (de-chunked) not yet taken */
  const char *err; /* NULL, or why it failed ("timeout", "dns: ...") */
  uint8_t head_done;
  uint8_t eof;    /* the whole response is in */
  uint8_t paused; /* stream: reading waits for aigw_upstream_sink_more */
  char errbuf[256];
};

typedef struct {
  const char *method; /* a token, e.g. "GET" (NUL-terminated, mlen bytes) */
  size_t mlen;
  const char *path; /* origin form: "/path?query" */
  size_t plen;
  const char *headers; /* "Name: value\r\n"... */
  size_t hlen;
  const char *body; /* may be NULL */
  size_t blen;
  uint64_t timeout_ms;     /* the whole exchange, connect included */
  uint8_t keepalive;       /* 0: Connection: close, never pooled */
  uint8_t add_host;        /* send the target's Host line */
  uint8_t add_user_agent;  /* send User-Agent: aigw/<version> */
  uint8_t target_timeouts; /* also the target's connect and read timeouts */
} aigw_fetch_t;

/* Starts an exchange with target t for f, answering into s. The target
 * and every pointer in f must stay valid until s->up is NULL. Returns 0
 * (under way, or already failed: see s->err) or AIGW_ENOMEM_REQ. A method,
 * path or header line that would not make a sound request head (see
 * header_lines.h) fails it at once, before any connection: s->err is
 * "bad request head: ...". */
/* 1 when the header lines ("Name: value\r\n"...) have one named name
 * (compared case-insensitively). */
int aigw_lines_have(const char *lines, size_t len, const char *name, size_t nl);

int aigw_upstream_fetch(aigw_loop_t *loop, aigw_target_t *t, const aigw_fetch_t *f,
                        aigw_upstream_sink_t *s);
/* Stream: the caller took s->body; read on (may notify before returning). */
void aigw_upstream_sink_more(aigw_upstream_t *u);

/* --- per-worker connection pool (pool.c) --- */

typedef struct aigw_pool_s aigw_pool_t;
typedef struct aigw_upconn_s aigw_upconn_t;

aigw_pool_t *aigw_pool_new(aigw_loop_t *loop);
/* Closes every idle connection; the pool is freed once they are closed. */
void aigw_pool_free(aigw_pool_t *p);
/* An idle connection for key, or NULL. The caller owns it until release. */
aigw_upconn_t *aigw_pool_acquire(aigw_pool_t *p, const char *key);
/* Parks a healthy connection for reuse, or closes it when the pool for its
 * key already holds max_idle. */
void aigw_pool_release(aigw_pool_t *p, aigw_upconn_t *uc, int max_idle, uint64_t idle_ms);
/* How many connections were handed out again (for tests). */
uint64_t aigw_pool_reuses(const aigw_pool_t *p);

struct aigw_upconn_s {
  uv_tcp_t tcp;
  aigw_pool_t *pool;
  char *key;
  aigw_tls_t *tls;
  aigw_upstream_t *user;      /* the exchange using it, NULL when idle */
  aigw_upconn_t *next, *prev; /* idle list */
  uint64_t expires;
  unsigned requests; /* requests served on this connection */
  int closing;
  int reading; /* uv_read_start is in effect */
  int writes;  /* uv_write requests not yet called back */
};

/* A new, unconnected connection (tcp initialised on the worker loop). */
aigw_upconn_t *aigw_upconn_new(aigw_pool_t *p, const char *key);
/* Closes and frees it (not returned to the pool). */
void aigw_upconn_close(aigw_upconn_t *uc);
/* An idle connection saw EOF, an error or stray bytes: drop it. */
void aigw__pool_idle_broken(aigw_upconn_t *uc);

#endif
