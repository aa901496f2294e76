/* lthread.c -- suspending and resuming Lua threads from the loop.
 *
 * A thread's coroutine carries the lthread in its exdata2 (the request, when
 * there is one, is in exdata, read by the FFI accessors). Coroutines a
 * plugin creates inherit both, so "may this yield?" is answered by checking
 * that L is the lthread's own coroutine and that it is running: a yield
 * from a foreign coroutine would land in the plugin's own resume. */
#include "lua/lthread.h"

#include <lauxlib.h>

#include "base/alloc.h"
#include "base/log.h"
#include "lua/lua_vm.h"
#include "lua/watchdog.h"

aigw_lthread_t *aigw_lthread_current(lua_State *L) {
  aigw_lthread_t *t = lua_getexdata2(L);
  if (t == NULL || t->co != L || !t->running || t->op != NULL) return NULL;
  return t;
}

int aigw_lthread_cannot_yield(lua_State *L, const char *what) {
  aigw_lthread_t *t = lua_getexdata2(L);
  lua_pushnil(L);
  if (t != NULL && t->co != L)
    lua_pushfstring(L, "%s cannot wait inside a coroutine created by a plugin", what);
  else
    lua_pushfstring(L,
                    "%s cannot wait in this phase (only access, upstream, timers and "
                    "init_worker's timers may)",
                    what);
  return 2;
}

int aigw_lthread_wait(lua_State *L, aigw_lthread_t *t, void *op, aigw_op_cancel_fn cancel) {
  t->op = op;
  t->cancel = cancel;
  return lua_yield(L, 0);
}

void aigw_lthread_resume(aigw_lthread_t *t, int nargs) {
  if (t->running) {
    /* An operation completed from inside the C function that started it:
     * resuming now would run the coroutine on top of itself. */
    aigw_log_error("lthread: operation completed synchronously; this is a bug");
    lua_pop(t->co, nargs);
    return;
  }
  t->op = NULL;
  t->cancel = NULL;
  t->running = 1;
  aigw_lua_enter(t->loop, t->co);
  int rc = lua_resume(t->co, nargs);
  aigw_lua_leave(t->loop);
  t->running = 0;
  if (rc == LUA_YIELD && t->op != NULL) return; /* waiting on an operation */
  /* done may free t: nothing touches it after this call. */
  t->done(t, rc);
}

void aigw_lthread_start(aigw_lthread_t *t, int nargs) { aigw_lthread_resume(t, nargs); }

aigw_loop_t *aigw_lua_loop(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "aigw.worker");
  aigw_loop_t *loop = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return loop;
}

aigw_lthread_t *aigw_lthread_new(aigw_gen_t *gen, void *owner, aigw_lthread_done_fn done) {
  lua_State *L = gen->L;
  aigw_loop_t *loop = gen->loop;
  aigw_lthread_t *t = aigw_free_pop(&loop->free_lts);
  if (t == NULL) t = aigw_try_malloc(sizeof *t);
  if (t == NULL) {
    lua_pop(L, 1);
    return NULL;
  }
  t->co = lua_newthread(L);
  t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_xmove(L, t->co, 1);
  lua_setexdata2(t->co, t);
  t->gen = gen;
  t->loop = gen->loop;
  t->owner = owner;
  t->done = done;
  t->op = NULL;
  t->cancel = NULL;
  t->running = 0;
  aigw_gen_ref(gen);
  return t;
}

void aigw_lthread_free(aigw_lthread_t *t) {
  if (t == NULL) return;
  if (t->op && t->cancel) t->cancel(t->op);
  t->op = NULL;
  lua_setexdata2(t->co, NULL);
  lua_setexdata(t->co, NULL);
  aigw_gen_t *gen = t->gen;
  luaL_unref(gen->L, LUA_REGISTRYINDEX, t->ref);
  aigw_loop_t *loop = t->loop;
  if (!aigw_free_push(&loop->free_lts, t)) aigw_free(t);
  aigw_gen_unref(gen);
}
