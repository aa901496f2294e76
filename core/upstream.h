/* upstream.h -- proxying a client request to an upstream HTTP/1.1 server
 * (plain or TLS), streaming the answer back as it arrives.
 *
 * A target is what a provider resolves to: scheme, host, port, base path,
 * TLS settings, timeouts, keep-alive limits and fixed header edits. Targets
 * are made from Lua (lua_target.c) once per provider per VM generation.
 * An upstream exchange belongs to the client request that started it: it
 * ends by finishing that request's response, or is aborted by it. */
#ifndef AIGW_UPSTREAM_H
#define AIGW_UPSTREAM_H

#include <stdint.h>

#include "http_conn.h"
#include "tls.h"

typedef struct aigw_target_s {
  int tls;
  char *host;               /* for DNS, SNI and certificate checks */
  uint16_t port;
  char *base_path;          /* "/v1", no trailing slash ("" for none) */
  char *host_header;        /* "Host: api.openai.com\r\n" */
  char *pool_key;           /* connections are shared by targets with one key */
  aigw_tls_ctx_t *tls_ctx;
  char *set_headers;        /* "Name: value\r\n"... added to every request */
  size_t set_headers_len;
  char **drop;              /* lower-case names of client headers not forwarded */
  size_t *drop_len;
  int ndrop;
  uint64_t connect_ms, read_ms, total_ms;
  int max_idle;
  uint64_t idle_ms;
} aigw_target_t;

/* Starts proxying r to target t at path (joined to the base path), with
 * body (NULL: the client's body) and extra header lines (may be NULL).
 * All pointers must stay valid until the exchange ends. On return the
 * exchange is under way, or the client already has its error response. */
void aigw_upstream_start(aigw_req_t *r, aigw_target_t *t, const char *path, size_t plen,
                         const char *body, size_t blen, const char *extra, size_t elen);

/* The client went away or the request is being torn down: close the
 * upstream connection now (it is not reused) and free the exchange. */
void aigw_upstream_abort(aigw_upstream_t *u);

/* The client's write queue has drained: resume reading the upstream. */
void aigw_upstream_client_drained(aigw_upstream_t *u);

/* --- per-worker connection pool (pool.c) --- */

typedef struct aigw_upconn_s aigw_upconn_t;

aigw_pool_t *aigw_pool_new(aigw_worker_t *w);
/* Closes every idle connection; the pool is freed once they are closed. */
void aigw_pool_free(aigw_pool_t *p);
/* An idle connection for key, or NULL. The caller owns it until release. */
aigw_upconn_t *aigw_pool_acquire(aigw_pool_t *p, const char *key);
/* Parks a healthy connection for reuse, or closes it when the pool for its
 * key already holds max_idle. */
void aigw_pool_release(aigw_pool_t *p, aigw_upconn_t *uc, int max_idle, uint64_t idle_ms);
/* Counters for tests and status. */
uint64_t aigw_pool_connects(const aigw_pool_t *p);
uint64_t aigw_pool_reuses(const aigw_pool_t *p);

struct aigw_upconn_s {
  uv_tcp_t tcp;
  aigw_pool_t *pool;
  char *key;
  aigw_tls_t *tls;
  aigw_upstream_t *user;      /* the exchange using it, NULL when idle */
  aigw_upconn_t *next, *prev; /* idle list */
  uint64_t expires;
  unsigned requests;          /* requests served on this connection */
  int closing;
  int reading;                /* uv_read_start is in effect */
  int writes;                 /* uv_write requests not yet called back */
};

/* A new, unconnected connection (tcp initialised on the worker loop). */
aigw_upconn_t *aigw_upconn_new(aigw_pool_t *p, const char *key);
/* Closes and frees it (not returned to the pool). */
void aigw_upconn_close(aigw_upconn_t *uc);
void aigw__pool_note_connect(aigw_pool_t *p);
/* An idle connection saw EOF, an error or stray bytes: drop it. */
void aigw__pool_idle_broken(aigw_upconn_t *uc);

#endif
