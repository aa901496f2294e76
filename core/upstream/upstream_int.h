/* upstream_int.h -- what the files of an upstream exchange share, and no
 * other file: the exchange struct and the functions they call across.
 *
 *   upstream.c       the exchange: teardown, timers, reading and parsing
 *                    the response, delivering it to its sink, starting
 *   upstream_conn.c  the connection: DNS, connect, TLS handshake, writes
 *   upstream_head.c  the request head, and header-line helpers
 *
 * The small helpers every file uses per header (name lists, tokens) are
 * inline here, so the split costs no call on the hot path. */
#ifndef AIGW_UPSTREAM_INT_H
#define AIGW_UPSTREAM_INT_H

#include <string.h>
#include <strings.h>

#include "base/json_scan.h"
#include "upstream/upstream.h"

#define CLIENT_HIGH_WATER (1024 * 1024)

/* Paths the proxy without filters never takes: kept out of line, so that
 * the hot callbacks stay small (tail calls, no extra stack frame). */
#define SLOW_PATH __attribute__((noinline, cold))

enum { ST_RESOLVE, ST_CONNECT, ST_HANDSHAKE, ST_WAIT, ST_BODY, ST_DONE };

/* u->method for a method llhttp has no number for (a caller's sink only). */
#define METHOD_OTHER 255

struct aigw_upstream_s {
  aigw_req_t *req;            /* proxy sink: the client request; NULL once detached */
  aigw_upstream_sink_t *sink; /* caller's sink; NULL for the proxy, or once detached */
  aigw_loop_t *loop;
  aigw_target_t *t;
  aigw_upconn_t *uc;
  aigw_dns_query_t *dnsq;
  uv_timer_t timer;
  llhttp_t parser;
  aigw_buf_t head; /* the request head */
  const char *body;
  size_t blen;
  aigw_buf_t rhead; /* response header lines for the client */
  aigw_buf_t hname, hval, reason, conn_tokens;
  aigw_buf_t held;         /* hold_error: the answer's body */
  aigw_json_tap_t *tap;    /* tap_usage: the answer's "usage" member */
  aigw_attempt_t *attempt; /* an attempt not yet committed to the client */
  uint64_t full_deadline;  /* attempt: the total deadline, once the first byte is in */
  uint64_t trial_cl;       /* attempt: the head waiting for the first byte */
  int trial_status;
  uint16_t trial_flags;
  int held_status;
  aigw_wbuf_t *out;    /* what this read sends to the client */
  char *rbuf;          /* read buffer (plaintext for TLS) */
  char *cbuf;          /* ciphertext read buffer (TLS only) */
  uint64_t deadline;   /* the total timeout */
  uint64_t wait_until; /* the current connect/read wait */
  uint64_t timer_due;
  uint64_t connect_ms, read_ms; /* 0: only the total deadline */
  const char *bad, *bad_why;    /* why the answer is refused (fail's msg and why) */
  uint32_t head_bytes;          /* of the head, then of trailers and chunk extensions */
  uint16_t head_lines;
  int state;
  uint8_t method; /* llhttp_method_t, or METHOD_OTHER */
  uint8_t reused : 1;
  uint8_t retried : 1;
  uint8_t got_bytes : 1;
  uint8_t paused : 1;
  uint8_t complete : 1;
  uint8_t has_date : 1;
  uint8_t no_body : 1;
  uint8_t slow_body : 1;    /* body pieces go through slow_body() */
  uint8_t filtering : 1;    /* proxy: the body filter runs */
  uint8_t discard_body : 1; /* proxy: the filtered status has no body */
  uint8_t no_reuse : 1;     /* sink: keepalive off */
  uint8_t ready : 1;        /* sink, stream: this read brought the head or body */
  uint8_t too_big : 1;      /* sink: the body is past max_body */
  uint8_t nomem : 1;
  uint8_t hold_error : 1;   /* proxy: an error answer kept whole for the filters */
  uint8_t eof_filtered : 1; /* the body filter had its last call */
  uint8_t trial_head : 1;   /* attempt: a head is in, the first body byte is not */
};

/* The exchange failed (upstream.c). Proxy: the client gets an error
 * response (status, code, msg), or its connection is closed if its
 * response already started. Sink: err is `why`. */
void aigw__up_fail(aigw_upstream_t *u, int status, const char *code, const char *msg,
                   const char *why);
/* Sets the connect/read wait to ms from now (0: only the total deadline). */
void aigw__up_arm(aigw_upstream_t *u, uint64_t ms);
/* Whether a request that may have reached the upstream can be sent again. */
int aigw__up_safe_to_retry(aigw_upstream_t *u);
/* The connection's read callback (upstream.c) and buffer (upstream_conn.c). */
void aigw__up_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
void aigw__up_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

/* The connection is read while an exchange waits on it. */
static inline void start_read(aigw_upconn_t *uc) {
  uv_read_start((uv_stream_t *)&uc->tcp, aigw__up_alloc, aigw__up_on_read);
  uc->reading = 1;
}

static inline void stop_read(aigw_upconn_t *uc) {
  uv_read_stop((uv_stream_t *)&uc->tcp);
  uc->reading = 0;
}

/* upstream_conn.c: resolve, connect (TLS handshake) and send the request;
 * send the request on a connection that is ready; write out whatever
 * ciphertext TLS has produced (0 or a negative code). */
void aigw__up_start_connect(aigw_upstream_t *u);
void aigw__up_send_request(aigw_upstream_t *u);
int aigw__up_tls_flush(aigw_upstream_t *u);

/* upstream_head.c: the request head into u->head, for the proxy (path and
 * extra lines from the decision) and for a caller's sink. Return 0,
 * AIGW_ENOMEM_REQ, or AIGW_EHEAD_REFUSED with *why set. */
int aigw__up_build_head(aigw_upstream_t *u, const char *path, size_t plen, const char *extra,
                        size_t elen, const char **why);
int aigw__up_build_fetch_head(aigw_upstream_t *u, const aigw_fetch_t *f, const char **why);

typedef struct {
  const char *name;
  size_t len;
} name_t;

#define NAME(s) \
  { s, sizeof s - 1 }

static inline int name_in(const name_t *list, size_t count, const char *n, size_t len) {
  for (size_t i = 0; i < count; i++)
    if (list[i].len == len && strncasecmp(n, list[i].name, len) == 0) return 1;
  return 0;
}

static inline int is_hop_by_hop(const char *n, size_t len) {
  static const name_t hop_by_hop[] = {NAME("connection"),
                                      NAME("keep-alive"),
                                      NAME("proxy-connection"),
                                      NAME("proxy-authenticate"),
                                      NAME("proxy-authorization"),
                                      NAME("te"),
                                      NAME("trailer"),
                                      NAME("transfer-encoding"),
                                      NAME("upgrade")};
  return name_in(hop_by_hop, sizeof hop_by_hop / sizeof *hop_by_hop, n, len);
}

/* Iterates a comma-separated header list: the next token, trimmed of
 * spaces and tabs, goes to *tok and *len (possibly empty). Returns 0 at the
 * end of the list. */
static inline int next_token(const char **p, const char *end, const char **tok, size_t *len) {
  if (*p >= end) return 0;
  const char *comma = memchr(*p, ',', (size_t)(end - *p));
  if (comma == NULL) comma = end;
  const char *a = *p, *b = comma;
  while (a < b && (*a == ' ' || *a == '\t')) a++;
  while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
  *tok = a;
  *len = (size_t)(b - a);
  *p = comma + 1;
  return 1;
}

#endif
