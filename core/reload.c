/* reload.c -- hot reload: every worker builds the next generation beside
 * the one serving; only if all of them succeed do they switch, else all
 * drop what they built and the error is reported.
 *
 *   main thread                          worker threads
 *   ticket asked (SIGHUP, admin, watch)
 *   seq++, cmd_build = seq  ──wakeup──▶  build a generation (new VM, config,
 *                                        plugins, init_worker), report
 *   all reported: decide    ◀──async───
 *   cmd_decided = seq       ──wakeup──▶  commit (swap, retire the old one)
 *                                        or discard; answer waiting callers
 *
 * Requests in flight keep the generation they started on until they end;
 * a worker builds on its own thread, so only that worker pauses while its
 * VM loads (milliseconds), and never two workers' VMs share anything. */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "log.h"
#include "lua_vm.h"
#include "server.h"

enum { RELOAD_BUILDING = 1, RELOAD_APPLYING = 2 };

typedef struct waiter_s {
  aigw_lthread_t *t;
  unsigned long ticket;
  struct waiter_s *next;
} waiter_t;

unsigned long aigw_server_reload(aigw_server_t *srv) {
  uv_mutex_lock(&srv->mu);
  unsigned long ticket = ++srv->reload_asked;
  uv_mutex_unlock(&srv->mu);
  uv_async_send(&srv->reload_async);
  return ticket;
}

/* Main thread: starts a reload when one is asked for and none runs;
 * decides one whose builds have all been reported; and answers it once
 * every worker has applied the decision, so that a caller told "reloaded"
 * is served by the new generation on every worker from then on. */
void aigw__server_reload_step(aigw_server_t *srv) {
  int wake = 0;
  uv_mutex_lock(&srv->mu);
  if (srv->reload_running == RELOAD_BUILDING) {
    int reported = 0, ok = 1;
    const char *first_err = NULL;
    int err_worker = 0;
    for (int i = 0; i < srv->nworkers; i++) {
      aigw_worker_t *w = &srv->workers[i];
      if (w->built != srv->reload_seq) continue;
      reported++;
      if (!w->build_ok && ok) {
        ok = 0;
        first_err = w->build_err;
        err_worker = w->id;
      }
    }
    if (reported == srv->nworkers) {
      if (ok) {
        srv->generation++;
        snprintf(srv->reload_msg, sizeof srv->reload_msg, "generation %lu", srv->generation);
        aigw_log_info("reload: generation %lu serving", srv->generation);
      } else {
        snprintf(srv->reload_msg, sizeof srv->reload_msg, "%s", first_err);
        aigw_log_error("reload rejected (worker %d): %s; generation %lu keeps serving",
                       err_worker, first_err, srv->generation);
      }
      srv->reload_ok = ok;
      for (int i = 0; i < srv->nworkers; i++) {
        srv->workers[i].cmd_decided = srv->reload_seq;
        srv->workers[i].cmd_commit = ok;
      }
      srv->reload_running = RELOAD_APPLYING;
      wake = 1;
    }
  }
  if (srv->reload_running == RELOAD_APPLYING) {
    int applied = 0;
    for (int i = 0; i < srv->nworkers; i++)
      if (srv->workers[i].applied == srv->reload_seq) applied++;
    /* A stopping server answers now: its workers may never apply. */
    if (applied == srv->nworkers || srv->stopping) {
      srv->reload_done = srv->reload_covers;
      srv->reload_running = 0;
      wake = 1;
    }
  }
  if (!srv->reload_running && srv->reload_asked > srv->reload_covers) {
    if (srv->stopping) {
      snprintf(srv->reload_msg, sizeof srv->reload_msg, "the server is stopping");
      srv->reload_ok = 0;
      srv->reload_done = srv->reload_covers = srv->reload_asked;
    } else {
      srv->reload_running = RELOAD_BUILDING;
      srv->reload_covers = srv->reload_asked;
      srv->reload_seq++;
      for (int i = 0; i < srv->nworkers; i++) srv->workers[i].cmd_build = srv->reload_seq;
      aigw_log_info("reload: building generation %lu", srv->generation + 1);
    }
    wake = 1;
  }
  uv_mutex_unlock(&srv->mu);
  if (wake)
    for (int i = 0; i < srv->nworkers; i++) uv_async_send(&srv->workers[i].wakeup);
}

static void answer_waiters(aigw_worker_t *w, unsigned long done, int ok, const char *msg) {
  waiter_t **p = (waiter_t **)&w->reload_waiters;
  while (*p) {
    waiter_t *wt = *p;
    if (wt->ticket > done) {
      p = &wt->next;
      continue;
    }
    *p = wt->next;
    aigw_lthread_t *t = wt->t;
    aigw_free(wt);
    if (ok) {
      lua_pushboolean(t->co, 1);
      lua_pushstring(t->co, msg);
    } else {
      lua_pushnil(t->co);
      lua_pushstring(t->co, msg);
    }
    aigw_lthread_resume(t, 2);
  }
}

void aigw__worker_reload_step(aigw_worker_t *w) {
  aigw_server_t *srv = w->server;
  uv_mutex_lock(&srv->mu);
  unsigned long build = w->cmd_build, decided = w->cmd_decided;
  int commit = w->cmd_commit;
  unsigned long generation = srv->generation;
  uv_mutex_unlock(&srv->mu);

  if (build > w->built) {
    char err[512] = "";
    aigw_gen_t *g = w->draining ? NULL : aigw_gen_new(w, err, sizeof err);
    if (g == NULL && err[0] == '\0') snprintf(err, sizeof err, "worker is stopping");
    uv_mutex_lock(&srv->mu);
    w->pending = g;
    w->built = build;
    w->build_ok = g != NULL;
    snprintf(w->build_err, sizeof w->build_err, "%s", err);
    uv_mutex_unlock(&srv->mu);
    uv_async_send(&srv->reload_async);
    return;   /* the decision comes with a later wakeup */
  }
  if (decided == w->built && decided > w->applied) {
    aigw_gen_t *g = w->pending;
    w->pending = NULL;
    if (g && commit) {
      g->id = generation;
      aigw_gen_t *old = w->gen;
      w->gen = g;
      if (old) aigw_gen_retire(old);
      atomic_store(&w->stat_gen, generation);
    } else if (g) {
      aigw_gen_retire(g);
    }
    aigw__worker_note_lua(w);
    uv_mutex_lock(&srv->mu);
    w->applied = decided;
    uv_mutex_unlock(&srv->mu);
    uv_async_send(&srv->reload_async);
  }
  if (w->reload_waiters) {
    uv_mutex_lock(&srv->mu);
    unsigned long done = srv->reload_done;
    int ok = srv->reload_ok;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", srv->reload_msg);
    uv_mutex_unlock(&srv->mu);
    answer_waiters(w, done, ok, msg);
  }
}

/* --- aigw_core.reload(): the admin endpoint's way in --- */

static void waiter_cancel(void *p) {
  waiter_t *wt = p;
  aigw_worker_t *w = wt->t->w;
  for (waiter_t **q = (waiter_t **)&w->reload_waiters; *q; q = &(*q)->next) {
    if (*q == wt) {
      *q = wt->next;
      break;
    }
  }
  aigw_free(wt);
}

static int core_reload(lua_State *L) {
  aigw_worker_t *w = aigw_lua_worker(L);
  if (w == NULL || w->server == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, "reload is not available here");
    return 2;
  }
  aigw_lthread_t *t = aigw_lthread_current(L);
  if (t == NULL) return aigw_lthread_cannot_yield(L, "aigw reload");
  waiter_t *wt = aigw_try_malloc(sizeof *wt);
  if (wt == NULL) return luaL_error(L, "no memory");
  wt->t = t;
  wt->ticket = aigw_server_reload(w->server);
  wt->next = w->reload_waiters;
  w->reload_waiters = wt;
  return aigw_lthread_wait(L, t, wt, waiter_cancel);
}

/* aigw_core.status(): every worker's generation and VM memory. */
static int core_status(lua_State *L) {
  aigw_worker_t *self = aigw_lua_worker(L);
  aigw_server_t *srv = self ? self->server : NULL;
  lua_newtable(L);
  if (srv == NULL) return 1;
  uv_mutex_lock(&srv->mu);
  lua_pushinteger(L, (lua_Integer)srv->generation);
  lua_setfield(L, -2, "generation");
  lua_pushboolean(L, srv->reload_running);
  lua_setfield(L, -2, "reloading");
  if (srv->reload_done) {
    lua_pushboolean(L, srv->reload_ok);
    lua_setfield(L, -2, "last_reload_ok");
    lua_pushstring(L, srv->reload_msg);
    lua_setfield(L, -2, "last_reload");
  }
  uv_mutex_unlock(&srv->mu);
  lua_createtable(L, srv->nworkers, 0);
  for (int i = 0; i < srv->nworkers; i++) {
    aigw_worker_t *w = &srv->workers[i];
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, w->id);
    lua_setfield(L, -2, "id");
    lua_pushinteger(L, (lua_Integer)atomic_load(&w->stat_gen));
    lua_setfield(L, -2, "generation");
    lua_pushinteger(L, (lua_Integer)atomic_load(&w->stat_lua_kb));
    lua_setfield(L, -2, "lua_memory_kb");
    lua_pushinteger(L, atomic_load(&w->stat_retired));
    lua_setfield(L, -2, "old_generations");
    lua_pushinteger(L, (lua_Integer)atomic_load(&w->stat_retired_kb));
    lua_setfield(L, -2, "old_generations_memory_kb");
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "workers");
  return 1;
}

void aigw__lua_register_admin(lua_State *L) {
  lua_pushcfunction(L, core_reload);
  lua_setfield(L, -2, "reload");
  lua_pushcfunction(L, core_status);
  lua_setfield(L, -2, "status");
}
