/* loop.h -- the per-loop context: what every layer of a worker needs of it.
 *
 * As uv_loop_t is to libuv, aigw_loop_t is to the core: one per worker
 * thread, embedded in and owned by the worker (worker.c), and handed to
 * everything that runs on that thread: the HTTP server, the upstream
 * exchanges, the resolver, the Redis clients and the Lua side. It holds
 * the libuv loop, the read-only config, the per-loop services (each made
 * and freed by the layer that owns it, held here by pointer), the free
 * lists, the cached Date line and the counters other threads read.
 * Nothing in it is shared with another loop except those counters. */
#ifndef AIGW_LOOP_H
#define AIGW_LOOP_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "base/config.h"
#include "loop/dns.h"

typedef struct aigw_loop_s aigw_loop_t;

/* A free list of fixed-size objects: the first word of a parked object
 * links the list. */
typedef struct {
  void *head;
  int n;
} aigw_freelist_t;

struct aigw_loop_s {
  uv_loop_t uv;
  int id; /* the worker's number, 1-based */
  const aigw_config_t *conf;
  int draining; /* 1: draining, 2: finished */
  void *data;   /* the owner's (the worker) */
  /* Called when the last client connection of a draining loop closes. */
  void (*drained)(aigw_loop_t *l);
  /* services, each made and freed by the layer that owns it */
  aigw_dns_t *dns;
  struct aigw_pool_s *pool;   /* upstream keep-alive pool (pool.c) */
  struct aigw_redis_s *redis; /* aigw.redis clients (redis.c) */
  /* client connections (http_conn.c) */
  struct aigw_conn_s *conns;  /* every open client connection */
  struct aigw_conn_s *posted; /* connections to parse on the next loop turn */
  uv_idle_t posted_idle;      /* runs them (initialised on first use) */
  int posted_init;
  int nconns;
  int max_conns;
  /* the Lua side (lua_vm.c, lua_timer.c, lua_reload.c) */
  struct aigw_gen_s *gen;             /* the generation new requests start on */
  struct aigw_gen_s *retired;         /* replaced generations still in use */
  const struct aigw_lua_host_s *host; /* what the process offers Lua; NULL: none */
  void *timer_runs;                   /* aigw.timer callbacks in flight */
  int timer_ids;
  void *reload_waiters;       /* lthreads waiting on a reload's outcome */
  _Atomic uint64_t lua_since; /* loop ms + 1 when Lua was entered; 0: not in Lua */
  uint64_t watch_signalled;   /* the lua_since the watchdog last signalled */
  /* counters read by the admin status of any worker */
  _Atomic unsigned long stat_gen;
  _Atomic size_t stat_lua_kb;
  _Atomic int stat_retired;
  _Atomic size_t stat_retired_kb;
  /* the cached Date line */
  char date[40];
  uint64_t date_sec;
  /* free lists: read buffers of the standard size, finished requests and
   * upstream exchanges (kept with their buffers), lthreads */
  aigw_freelist_t free_rbufs, free_reqs, free_ups, free_lts;
};

/* Cached "Date: <IMF-fixdate>\r\n" line for the current second (always
 * AIGW_DATE_LEN bytes). */
#define AIGW_DATE_LEN 37
const char *aigw_loop_date(aigw_loop_t *l);

/* A read buffer of AIGW_RBUF_SIZE bytes from the loop's free list. */
#define AIGW_RBUF_SIZE (16 * 1024)
char *aigw_rbuf_get(aigw_loop_t *l);
void aigw_rbuf_put(aigw_loop_t *l, char *buf);

/* Up to AIGW_MAX_FREE_OBJS objects per list. pop returns NULL when empty;
 * push returns 0 when the list is full (the caller frees the object). */
#define AIGW_MAX_FREE_OBJS 256
void *aigw_free_pop(aigw_freelist_t *f);
int aigw_free_push(aigw_freelist_t *f, void *obj);

/* Frees the parked read buffers (at the loop's end; the owners of the
 * object lists empty theirs). */
void aigw_loop_free_rbufs(aigw_loop_t *l);

#endif
