/* worker.h -- a worker thread: one uv loop, one LuaJIT VM, its own listeners
 * (SO_REUSEPORT), its upstream pool and DNS cache. Nothing here is shared
 * with other workers except the config and the shared dicts. */
#ifndef AIGW_WORKER_H
#define AIGW_WORKER_H

#include <lua.h>
#include <stdatomic.h>
#include <uv.h>

#include "config.h"
#include "dns.h"

typedef struct aigw_conn_s aigw_conn_t;
typedef struct aigw_pool_s aigw_pool_t;
typedef struct aigw_server_s aigw_server_t;

typedef struct aigw_listener_s {
  uv_tcp_t tcp;
  struct aigw_worker_s *worker;
  int admin;
} aigw_listener_t;

typedef struct aigw_worker_s {
  int id;                      /* 1-based */
  uv_loop_t loop;
  uv_thread_t thread;
  uv_async_t wakeup;           /* stop requests from the main thread */
  uv_timer_t drain_timer;
  aigw_server_t *server;
  const aigw_config_t *conf;
  struct aigw_gen_s *gen;      /* the generation new requests start on */
  struct aigw_gen_s *retired;  /* replaced generations still in use */
  _Atomic uint64_t lua_since;  /* loop ms + 1 when Lua was entered; 0: not in Lua */
  uint64_t watch_signalled;    /* the lua_since the watchdog last signalled */
  void *timer_runs;            /* aigw.timer callbacks in flight (lua_timer.c) */
  int timer_ids;
  /* reload: commands from the main thread and the answers (server->mu) */
  unsigned long cmd_build;     /* build a generation for this reload number */
  unsigned long cmd_decided;   /* the reload number decided */
  int cmd_commit;              /* its decision: 1 commit, 0 discard */
  unsigned long built;         /* the reload number last built */
  unsigned long applied;       /* the reload number whose decision is applied */
  int build_ok;
  char build_err[512];
  struct aigw_gen_s *pending;  /* built, waiting for the decision */
  void *reload_waiters;        /* lthreads waiting on a reload's outcome */
  /* read by the admin status of any worker */
  _Atomic unsigned long stat_gen;
  _Atomic size_t stat_lua_kb;
  _Atomic int stat_retired;
  _Atomic size_t stat_retired_kb;
  aigw_dns_t *dns;
  aigw_pool_t *pool;
  struct aigw_redis_s *redis;  /* aigw.redis clients (redis.c) */
  aigw_listener_t *listeners;
  int nlisteners;
  aigw_conn_t *conns;          /* every open client connection */
  aigw_conn_t *posted;         /* connections to parse on the next loop turn */
  uv_idle_t posted_idle;       /* runs them (initialised on first use) */
  int posted_init;
  int nconns;
  int max_conns;
  int draining;
  _Atomic int stop_asked;
  char date[40];               /* "Date: ...\r\n", refreshed once a second */
  uint64_t date_sec;
  /* read buffers of the standard size, kept for reuse */
  void *free_rbufs;
  int nfree_rbufs;
  /* finished requests and upstream exchanges, kept with their buffers */
  void *free_reqs;
  int nfree_reqs;
  void *free_ups;
  int nfree_ups;
  void *free_lts;
  int nfree_lts;
} aigw_worker_t;

/* Cached "Date: <IMF-fixdate>\r\n" line for the current second (always
 * AIGW_DATE_LEN bytes). */
#define AIGW_DATE_LEN 37
const char *aigw__worker_date(aigw_worker_t *w);

/* A read buffer of AIGW_RBUF_SIZE bytes from the worker's free list. */
#define AIGW_RBUF_SIZE (16 * 1024)
char *aigw__rbuf_get(aigw_worker_t *w);
void aigw__rbuf_put(aigw_worker_t *w, char *buf);

/* Free lists of fixed-size objects: the first word of a parked object links
 * the list. Return NULL when empty. */
#define AIGW_MAX_FREE_OBJS 256
void *aigw__free_pop(void **list, int *n);
int aigw__free_push(void **list, int *n, void *obj);   /* 0: list full, caller frees */
/* Frees everything parked on the worker's free lists (at its end). */
void aigw__worker_free_lists(aigw_worker_t *w);

/* Starts the worker thread; returns 0 or a negative code. */
int aigw_worker_start(aigw_worker_t *w);
/* Asks the worker to drain and stop (thread-safe). */
void aigw_worker_stop(aigw_worker_t *w);
void aigw_worker_join(aigw_worker_t *w);

/* Refreshes the worker's VM memory figures for the admin status. */
void aigw__worker_note_lua(aigw_worker_t *w);

/* Called by a connection when it closes, so draining can finish. */
void aigw__worker_conn_closed(aigw_worker_t *w);

#endif
