/* worker.c -- a worker thread and its loop.
 *
 * Everything a worker owns is set up on the main thread before the thread
 * starts (so a bad plugin or a busy port fails `aigw run` at once, with one
 * message); the thread then only runs the loop. Stopping is asked through
 * an async handle: the worker closes its listeners and idle connections,
 * lets requests in flight finish until the drain timeout, then closes the
 * rest and leaves the loop. */
#include "worker.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "http_conn.h"
#include "log.h"
#include "lua_vm.h"
#include "redis.h"
#include "server.h"
#include "shdict.h"
#include "upstream.h"

void aigw__request_destroy(void *r);
void aigw__upstream_destroy(void *u);

/* Sanitizer builds recycle nothing, so a use after free is caught rather
 * than hidden by a recycled object. */
#if defined(__SANITIZE_ADDRESS__)
#define RECYCLE 0
#else
#define RECYCLE 1
#endif

typedef struct free_rbuf_s {
  struct free_rbuf_s *next;
} free_rbuf_t;

#define MAX_FREE_RBUFS 256

char *aigw__rbuf_get(aigw_worker_t *w) {
  free_rbuf_t *f = w->free_rbufs;
  if (f) {
    w->free_rbufs = f->next;
    w->nfree_rbufs--;
    return (char *)f;
  }
  return aigw_malloc(AIGW_RBUF_SIZE);
}

void aigw__rbuf_put(aigw_worker_t *w, char *buf) {
  if (!RECYCLE || w->nfree_rbufs >= MAX_FREE_RBUFS) {
    aigw_free(buf);
    return;
  }
  free_rbuf_t *f = (free_rbuf_t *)buf;
  f->next = w->free_rbufs;
  w->free_rbufs = f;
  w->nfree_rbufs++;
}

void *aigw__free_pop(void **list, int *n) {
  void **obj = *list;
  if (obj == NULL) return NULL;
  *list = *obj;
  (*n)--;
  return obj;
}

int aigw__free_push(void **list, int *n, void *obj) {
  if (!RECYCLE || *n >= AIGW_MAX_FREE_OBJS) return 0;
  *(void **)obj = *list;
  *list = obj;
  (*n)++;
  return 1;
}

const char *aigw__worker_date(aigw_worker_t *w) {
  uint64_t now = uv_now(&w->loop) / 1000;
  if (now != w->date_sec || w->date[0] == '\0') {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(w->date, sizeof w->date, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    w->date_sec = now;
  }
  return w->date;
}

static void on_closed_nothing(uv_handle_t *h) { (void)h; }

void aigw__worker_note_lua(aigw_worker_t *w) {
  if (w->gen) atomic_store_explicit(&w->stat_lua_kb, aigw_gen_memory_kb(w->gen), memory_order_relaxed);
  int n = 0;
  size_t kb = 0;
  for (aigw_gen_t *g = w->retired; g; g = g->next, n++) kb += aigw_gen_memory_kb(g);
  atomic_store_explicit(&w->stat_retired, n, memory_order_relaxed);
  atomic_store_explicit(&w->stat_retired_kb, kb, memory_order_relaxed);
}

static void finish(aigw_worker_t *w) {
  if (w->draining == 2) return;
  w->draining = 2;
  /* Timers and their callbacks would keep the loop alive: stop them. */
  if (w->gen) aigw__timers_cancel(w->gen);
  aigw__timers_stop_runs(w);
  if (w->pending) {
    aigw_gen_retire(w->pending);
    w->pending = NULL;
  }
  aigw_redis_worker_close(w);
  uv_close((uv_handle_t *)&w->wakeup, on_closed_nothing);
  uv_close((uv_handle_t *)&w->drain_timer, on_closed_nothing);
  if (w->posted_init) uv_close((uv_handle_t *)&w->posted_idle, on_closed_nothing);
  aigw_pool_free(w->pool);
  w->pool = NULL;
  aigw_dns_free(w->dns);
  w->dns = NULL;
}

void aigw__worker_conn_closed(aigw_worker_t *w) {
  if (w->draining == 1 && w->nconns == 0) finish(w);
}

static void on_drain_timeout(uv_timer_t *t) {
  aigw_worker_t *w = t->data;
  if (w->nconns > 0) aigw_log_warn("drain timeout: closing %d connection(s)", w->nconns);
  for (aigw_conn_t *c = w->conns, *next; c; c = next) {
    next = c->next;
    aigw_conn_close(c);
  }
  if (w->nconns == 0) finish(w);
}

static void drain(aigw_worker_t *w) {
  w->draining = 1;
  for (int i = 0; i < w->nlisteners; i++) uv_close((uv_handle_t *)&w->listeners[i].tcp, NULL);
  for (aigw_conn_t *c = w->conns, *next; c; c = next) {
    next = c->next;
    aigw_conn_close_if_idle(c);
  }
  if (w->nconns == 0) {
    finish(w);
    return;
  }
  uv_timer_start(&w->drain_timer, on_drain_timeout, w->conf->drain_timeout_ms, 0);
}

static void on_wakeup(uv_async_t *a) {
  aigw_worker_t *w = a->data;
  if (atomic_load(&w->stop_asked) && !w->draining) drain(w);
  if (w->draining != 2 && w->server) aigw__worker_reload_step(w);
}

void aigw__worker_free_lists(aigw_worker_t *w) {
  void *obj;
  while ((obj = aigw__free_pop(&w->free_reqs, &w->nfree_reqs)) != NULL) aigw__request_destroy(obj);
  while ((obj = aigw__free_pop(&w->free_ups, &w->nfree_ups)) != NULL) aigw__upstream_destroy(obj);
  while ((obj = aigw__free_pop(&w->free_lts, &w->nfree_lts)) != NULL) aigw_free(obj);
  while (w->free_rbufs) {
    free_rbuf_t *f = w->free_rbufs;
    w->free_rbufs = f->next;
    aigw_free(f);
  }
}

static void thread_main(void *arg) {
  aigw_worker_t *w = arg;
  aigw_log_set_thread_id(w->id);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  aigw_lua_worker_close(w);
  /* Handles closed in finish() have had their callbacks; anything left is a bug. */
  if (uv_loop_close(&w->loop) != 0) aigw_log_warn("worker loop closed with handles open");
  aigw__worker_free_lists(w);
  aigw_shdict_thread_cleanup();
}

/* Sets up the worker on the calling thread: loop, VM, listeners. */
static int worker_setup(aigw_worker_t *w, char *err, size_t errlen) {
  const aigw_config_t *c = w->conf;
  uv_loop_init(&w->loop);
  uv_async_init(&w->loop, &w->wakeup, on_wakeup);
  w->wakeup.data = w;
  uv_timer_init(&w->loop, &w->drain_timer);
  w->drain_timer.data = w;
  w->dns = aigw_dns_new(&w->loop, 30.0);
  w->pool = aigw_pool_new(w);
  w->max_conns = c->max_connections / w->server->nworkers;
  if (w->max_conns < 1) w->max_conns = 1;
  if (aigw_lua_worker_init(w, err, errlen) != 0) return -1;
  atomic_store(&w->stat_gen, 1);
  aigw__worker_note_lua(w);
  w->nlisteners = c->nlisten + (c->admin_listen ? 1 : 0);
  w->listeners = aigw_calloc((size_t)w->nlisteners, sizeof *w->listeners);
  for (int i = 0; i < w->nlisteners; i++) {
    int admin = i == c->nlisten;
    const char *addr = admin ? c->admin_listen : c->listen[i];
    int rc = aigw__listener_open(w, &w->listeners[i], addr, admin);
    if (rc < 0) {
      snprintf(err, errlen, "cannot listen on %s%s: %s", addr, admin ? " (admin)" : "",
               aigw_strerror(rc));
      w->nlisteners = i;
      return -1;
    }
  }
  return 0;
}

/* Tears down a worker whose setup failed, on the calling thread. */
static void worker_abandon(aigw_worker_t *w) {
  for (int i = 0; i < w->nlisteners; i++) uv_close((uv_handle_t *)&w->listeners[i].tcp, NULL);
  w->draining = 1;
  finish(w);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  aigw_lua_worker_close(w);
  uv_loop_close(&w->loop);
}

int aigw__worker_setup(aigw_worker_t *w, char *err, size_t errlen) {
  int rc = worker_setup(w, err, errlen);
  if (rc != 0) worker_abandon(w);
  return rc;
}

int aigw_worker_start(aigw_worker_t *w) { return uv_thread_create(&w->thread, thread_main, w); }

void aigw_worker_stop(aigw_worker_t *w) {
  atomic_store(&w->stop_asked, 1);
  uv_async_send(&w->wakeup);
}

void aigw_worker_join(aigw_worker_t *w) {
  uv_thread_join(&w->thread);
  aigw_free(w->listeners);
}
