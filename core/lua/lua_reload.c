/* lua_reload.c -- aigw_core.reload() and aigw_core.status(): the admin
 * endpoint's way into the process's reload (reload.c) and its state, through
 * the host the server installs in each loop (lua_vm.h). */
#include <lauxlib.h>
#include <stdatomic.h>

#include "base/alloc.h"
#include "lua/lthread.h"
#include "lua/lua_vm.h"

typedef struct waiter_s {
  aigw_lthread_t *t;
  unsigned long ticket;
  struct waiter_s *next;
} waiter_t;

void aigw_lua_reload_answer(aigw_loop_t *loop, unsigned long done, int ok, const char *msg) {
  waiter_t **p = (waiter_t **)&loop->reload_waiters;
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

static void waiter_cancel(void *p) {
  waiter_t *wt = p;
  aigw_loop_t *loop = wt->t->loop;
  for (waiter_t **q = (waiter_t **)&loop->reload_waiters; *q; q = &(*q)->next) {
    if (*q == wt) {
      *q = wt->next;
      break;
    }
  }
  aigw_free(wt);
}

static int core_reload(lua_State *L) {
  aigw_loop_t *loop = aigw_lua_loop(L);
  const aigw_lua_host_t *host = loop ? loop->host : NULL;
  if (host == NULL || host->reload == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, "reload is not available here");
    return 2;
  }
  aigw_lthread_t *t = aigw_lthread_current(L);
  if (t == NULL) return aigw_lthread_cannot_yield(L, "aigw reload");
  waiter_t *wt = aigw_try_malloc(sizeof *wt);
  if (wt == NULL) return luaL_error(L, "no memory");
  wt->t = t;
  wt->ticket = host->reload(host->ctx);
  wt->next = loop->reload_waiters;
  loop->reload_waiters = wt;
  return aigw_lthread_wait(L, t, wt, waiter_cancel);
}

/* aigw_core.status(): every worker's generation and VM memory. */
static int core_status(lua_State *L) {
  aigw_loop_t *self = aigw_lua_loop(L);
  const aigw_lua_host_t *host = self ? self->host : NULL;
  lua_newtable(L);
  if (host == NULL || host->status == NULL || host->worker_loop == NULL) return 1;
  aigw_process_status_t st;
  host->status(host->ctx, &st);
  lua_pushinteger(L, (lua_Integer)st.generation);
  lua_setfield(L, -2, "generation");
  lua_pushboolean(L, st.reloading);
  lua_setfield(L, -2, "reloading");
  if (st.has_last) {
    lua_pushboolean(L, st.last_ok);
    lua_setfield(L, -2, "last_reload_ok");
    lua_pushstring(L, st.last);
    lua_setfield(L, -2, "last_reload");
  }
  lua_createtable(L, host->nworkers, 0);
  for (int i = 0; i < host->nworkers; i++) {
    aigw_loop_t *l = host->worker_loop(host->ctx, i);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, l->id);
    lua_setfield(L, -2, "id");
    lua_pushinteger(L, (lua_Integer)atomic_load(&l->stat_gen));
    lua_setfield(L, -2, "generation");
    lua_pushinteger(L, (lua_Integer)atomic_load(&l->stat_lua_kb));
    lua_setfield(L, -2, "lua_memory_kb");
    lua_pushinteger(L, atomic_load(&l->stat_retired));
    lua_setfield(L, -2, "old_generations");
    lua_pushinteger(L, (lua_Integer)atomic_load(&l->stat_retired_kb));
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
