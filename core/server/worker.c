/* worker.c -- a worker thread and its loop.
 *
 * Everything a worker owns is set up on the main thread before the thread
 * starts (so a bad plugin or a busy port fails `aigw run` at once, with one
 * message); the thread then only runs the loop. Stopping is asked through
 * an async handle: the worker closes its listeners and idle connections,
 * lets requests in flight finish until the drain timeout, then closes the
 * rest and leaves the loop. */
#include "server/worker.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/shdict.h"
#include "http/http_conn.h"
#include "loop/redis.h"
#include "lua/lua_vm.h"
#include "upstream/upstream.h"

static void on_closed_nothing(uv_handle_t *h) { (void)h; }

static void finish(aigw_worker_t *w) {
  if (w->loop.draining == 2) return;
  w->loop.draining = 2;
  /* Timers and their callbacks would keep the loop alive: stop them. */
  if (w->loop.gen) aigw__timers_cancel(w->loop.gen);
  aigw__timers_stop_runs(&w->loop);
  if (w->pending) {
    aigw_gen_retire(w->pending);
    w->pending = NULL;
  }
  aigw_redis_close_all(&w->loop);
  uv_close((uv_handle_t *)&w->wakeup, on_closed_nothing);
  uv_close((uv_handle_t *)&w->drain_timer, on_closed_nothing);
  if (w->loop.posted_init) uv_close((uv_handle_t *)&w->loop.posted_idle, on_closed_nothing);
  aigw_pool_free(w->loop.pool);
  w->loop.pool = NULL;
  aigw_dns_free(w->loop.dns);
  w->loop.dns = NULL;
}

static void on_drained(aigw_loop_t *l) { finish(l->data); }

static void on_drain_timeout(uv_timer_t *t) {
  aigw_worker_t *w = t->data;
  if (w->loop.nconns > 0) aigw_log_warn("drain timeout: closing %d connection(s)", w->loop.nconns);
  for (aigw_conn_t *c = w->loop.conns, *next; c; c = next) {
    next = c->next;
    aigw_conn_close(c);
  }
  if (w->loop.nconns == 0) finish(w);
}

static void drain(aigw_worker_t *w) {
  w->loop.draining = 1;
  for (int i = 0; i < w->nlisteners; i++) uv_close((uv_handle_t *)&w->listeners[i].tcp, NULL);
  for (aigw_conn_t *c = w->loop.conns, *next; c; c = next) {
    next = c->next;
    aigw_conn_close_if_idle(c);
  }
  if (w->loop.nconns == 0) {
    finish(w);
    return;
  }
  uv_timer_start(&w->drain_timer, on_drain_timeout, w->loop.conf->drain_timeout_ms, 0);
}

static void on_wakeup(uv_async_t *a) {
  aigw_worker_t *w = a->data;
  if (atomic_load(&w->stop_asked) && !w->loop.draining) drain(w);
  if (w->loop.draining != 2 && w->server) aigw__worker_reload_step(w);
}

int aigw__loop_close(aigw_loop_t *l) {
  if (l->gen) aigw__timers_cancel(l->gen);
  aigw__timers_stop_runs(l);
  aigw_redis_close_all(l);
  aigw_pool_free(l->pool);
  aigw_dns_free(l->dns);
  l->pool = NULL;
  l->dns = NULL;
  uv_run(&l->uv, UV_RUN_DEFAULT);
  aigw_lua_worker_close(l);
  uv_run(&l->uv, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&l->uv);
  aigw__loop_free_lists(l);
  return rc;
}

void aigw__loop_free_lists(aigw_loop_t *l) {
  void *obj;
  while ((obj = aigw_free_pop(&l->free_reqs)) != NULL) aigw__request_destroy(obj);
  while ((obj = aigw_free_pop(&l->free_ups)) != NULL) aigw__upstream_destroy(obj);
  while ((obj = aigw_free_pop(&l->free_lts)) != NULL) aigw_free(obj);
  aigw_loop_free_rbufs(l);
}

static void thread_main(void *arg) {
  aigw_worker_t *w = arg;
  aigw_log_set_thread_id(w->loop.id);
  uv_run(&w->loop.uv, UV_RUN_DEFAULT);
  aigw_lua_worker_close(&w->loop);
  /* Handles closed in finish() have had their callbacks; anything left is a bug. */
  if (uv_loop_close(&w->loop.uv) != 0) aigw_log_warn("worker loop closed with handles open");
  aigw__loop_free_lists(&w->loop);
  aigw_shdict_thread_cleanup();
}

/* Sets up the worker on the calling thread: loop, VM, listeners. */
static int worker_setup(aigw_worker_t *w, char *err, size_t errlen) {
  const aigw_config_t *c = w->loop.conf;
  uv_loop_init(&w->loop.uv);
  uv_async_init(&w->loop.uv, &w->wakeup, on_wakeup);
  w->wakeup.data = w;
  uv_timer_init(&w->loop.uv, &w->drain_timer);
  w->drain_timer.data = w;
  w->loop.data = w;
  w->loop.drained = on_drained;
  w->loop.dns = aigw_dns_new(&w->loop.uv, 30.0);
  w->loop.pool = aigw_pool_new(&w->loop);
  if (aigw_lua_worker_init(&w->loop, err, errlen) != 0) return -1;
  atomic_store(&w->loop.stat_gen, 1);
  aigw_lua_note_memory(&w->loop);
  w->nlisteners = c->nlisten + (c->admin_listen ? 1 : 0);
  w->listeners = aigw_calloc((size_t)w->nlisteners, sizeof *w->listeners);
  for (int i = 0; i < w->nlisteners; i++) {
    int admin = i == c->nlisten;
    const char *addr = admin ? c->admin_listen : c->listen[i];
    int rc = aigw__listener_open(&w->loop, &w->listeners[i], addr, admin);
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
  w->loop.draining = 1;
  finish(w);
  uv_run(&w->loop.uv, UV_RUN_DEFAULT);
  aigw_lua_worker_close(&w->loop);
  uv_loop_close(&w->loop.uv);
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
