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
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "lua/lua_vm.h"
#include "server/server.h"

enum { RELOAD_BUILDING = 1, RELOAD_APPLYING = 2 };

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
        err_worker = w->loop.id;
      }
    }
    if (reported == srv->nworkers) {
      if (ok) {
        srv->generation++;
        snprintf(srv->reload_msg, sizeof srv->reload_msg, "generation %lu", srv->generation);
        aigw_log_info("reload: generation %lu serving", srv->generation);
      } else {
        snprintf(srv->reload_msg, sizeof srv->reload_msg, "%s", first_err);
        aigw_log_error("reload rejected (worker %d): %s; generation %lu keeps serving", err_worker,
                       first_err, srv->generation);
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

void aigw__worker_reload_step(aigw_worker_t *w) {
  aigw_server_t *srv = w->server;
  uv_mutex_lock(&srv->mu);
  unsigned long build = w->cmd_build, decided = w->cmd_decided;
  int commit = w->cmd_commit;
  unsigned long generation = srv->generation;
  uv_mutex_unlock(&srv->mu);

  if (build > w->built) {
    char err[512] = "";
    aigw_gen_t *g = w->loop.draining ? NULL : aigw_gen_new(&w->loop, err, sizeof err);
    if (g == NULL && err[0] == '\0') snprintf(err, sizeof err, "worker is stopping");
    uv_mutex_lock(&srv->mu);
    w->pending = g;
    w->built = build;
    w->build_ok = g != NULL;
    snprintf(w->build_err, sizeof w->build_err, "%s", err);
    uv_mutex_unlock(&srv->mu);
    uv_async_send(&srv->reload_async);
    return; /* the decision comes with a later wakeup */
  }
  if (decided == w->built && decided > w->applied) {
    aigw_gen_t *g = w->pending;
    w->pending = NULL;
    if (g && commit) {
      g->id = generation;
      aigw_gen_t *old = w->loop.gen;
      w->loop.gen = g;
      if (old) aigw_gen_retire(old);
      atomic_store(&w->loop.stat_gen, generation);
    } else if (g) {
      aigw_gen_retire(g);
    }
    aigw_lua_note_memory(&w->loop);
    uv_mutex_lock(&srv->mu);
    w->applied = decided;
    uv_mutex_unlock(&srv->mu);
    uv_async_send(&srv->reload_async);
  }
  if (w->loop.reload_waiters) {
    uv_mutex_lock(&srv->mu);
    unsigned long done = srv->reload_done;
    int ok = srv->reload_ok;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", srv->reload_msg);
    uv_mutex_unlock(&srv->mu);
    aigw_lua_reload_answer(&w->loop, done, ok, msg);
  }
}

/* --- what the Lua side sees of the process (lua_vm.h's host) --- */

static unsigned long host_reload(void *ctx) { return aigw_server_reload(ctx); }

static void host_status(void *ctx, aigw_process_status_t *st) {
  aigw_server_t *srv = ctx;
  uv_mutex_lock(&srv->mu);
  st->generation = srv->generation;
  st->reloading = srv->reload_running != 0;
  st->has_last = srv->reload_done != 0;
  st->last_ok = srv->reload_ok;
  snprintf(st->last, sizeof st->last, "%s", srv->reload_msg);
  uv_mutex_unlock(&srv->mu);
}

static aigw_loop_t *host_worker_loop(void *ctx, int i) {
  aigw_server_t *srv = ctx;
  return &srv->workers[i].loop;
}

void aigw__server_lua_host(aigw_server_t *srv, aigw_lua_host_t *h) {
  h->nworkers = srv->nworkers;
  h->ctx = srv;
  h->reload = host_reload;
  h->status = host_status;
  h->worker_loop = host_worker_loop;
}
