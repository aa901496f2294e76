/* lua_timer.c -- aigw.sleep and aigw.timer: waiting on the loop from Lua.
 *
 *   aigw_core.sleep(seconds)                 yields the calling lthread
 *   aigw_core.timer_at(delay, fn, ...)       -> id   (fn(premature, ...))
 *   aigw_core.timer_every(interval, fn, ...) -> id
 *   aigw_core.timer_cancel(id)               -> true if it was pending
 *
 * A timer belongs to the generation that made it: when the generation is
 * replaced (reload) or the worker stops, its pending timers are cancelled
 * (never called). Each firing runs fn in a new lthread, so a callback may
 * wait on I/O; a repeating timer skips a tick while its previous callback
 * is still running, so slow callbacks never pile up. */
#include <lauxlib.h>
#include <math.h>

#include "base/alloc.h"
#include "base/log.h"
#include "lua/lthread.h"
#include "lua/lua_vm.h"

/* --- sleep --- */

typedef struct {
  uv_timer_t timer;
  aigw_lthread_t *t; /* NULL once cancelled */
} sleep_op_t;

static void on_sleep_closed(uv_handle_t *h) { aigw_free(h->data); }

static void on_sleep_done(uv_timer_t *h) {
  sleep_op_t *op = h->data;
  aigw_lthread_t *t = op->t;
  uv_close((uv_handle_t *)&op->timer, on_sleep_closed);
  if (t) aigw_lthread_resume(t, 0);
}

static void sleep_cancel(void *p) {
  sleep_op_t *op = p;
  op->t = NULL;
  uv_close((uv_handle_t *)&op->timer, on_sleep_closed);
}

static double check_seconds(lua_State *L, int idx, const char *what) {
  double s = luaL_checknumber(L, idx);
  if (!(s >= 0) || s > 1e9) luaL_error(L, "%s: expected a number of seconds >= 0", what);
  return s;
}

static int core_sleep(lua_State *L) {
  double s = check_seconds(L, 1, "aigw.sleep");
  aigw_lthread_t *t = aigw_lthread_current(L);
  if (t == NULL) {
    aigw_lthread_cannot_yield(L, "aigw.sleep");
    return lua_error(L);
  }
  sleep_op_t *op = aigw_try_malloc(sizeof *op);
  if (op == NULL) return luaL_error(L, "aigw.sleep: no memory");
  op->t = t;
  uv_timer_init(&t->loop->uv, &op->timer);
  op->timer.data = op;
  /* The loop's clock is cached: Lua may have run a while since it was read. */
  uv_update_time(&t->loop->uv);
  uv_timer_start(&op->timer, on_sleep_done, (uint64_t)llround(s * 1000.0), 0);
  return aigw_lthread_wait(L, t, op, sleep_cancel);
}

/* --- timers --- */

struct aigw_timer_s {
  uv_timer_t h;
  aigw_gen_t *gen;
  struct aigw_timer_s *next, **pprev; /* the generation's list */
  int fn_ref;                         /* { fn, n, args... } in the registry */
  int id;
  uint64_t interval_ms; /* 0: once */
  int running;          /* callbacks of this timer still in flight */
  int cancelled;
};
typedef struct aigw_timer_s lua_timer_t;

/* A callback in flight: an lthread the worker can stop at shutdown. */
typedef struct run_s {
  aigw_lthread_t *t;
  lua_timer_t *timer; /* NULL once the timer is gone */
  struct run_s *next, **pprev;
} run_t;

static void unlink_timer(lua_timer_t *tm) {
  if (tm->pprev == NULL) return;
  *tm->pprev = tm->next;
  if (tm->next) tm->next->pprev = tm->pprev;
  tm->pprev = NULL;
  tm->next = NULL;
}

static void on_timer_closed(uv_handle_t *h) {
  lua_timer_t *tm = h->data;
  if (tm->running == 0) aigw_free(tm);
  else tm->cancelled = 2; /* freed by its last callback */
}

static void timer_close(lua_timer_t *tm) {
  if (tm->cancelled) return;
  tm->cancelled = 1;
  unlink_timer(tm);
  luaL_unref(tm->gen->L, LUA_REGISTRYINDEX, tm->fn_ref);
  uv_close((uv_handle_t *)&tm->h, on_timer_closed);
}

static void run_unlink(run_t *run) {
  *run->pprev = run->next;
  if (run->next) run->next->pprev = run->pprev;
}

static void callback_done(aigw_lthread_t *t, int status) {
  run_t *run = t->owner;
  if (status != 0) {
    lua_State *co = t->co;
    const char *msg = status == LUA_YIELD ? "a timer callback yielded outside the aigw API"
                                          : lua_tostring(co, -1);
    luaL_traceback(co, co, msg ? msg : "(error object is not a string)", 0);
    aigw_log_error("timer callback: %s", lua_tostring(co, -1));
  }
  lua_timer_t *tm = run->timer;
  if (tm && --tm->running == 0 && tm->cancelled == 2) aigw_free(tm);
  run_unlink(run);
  aigw_free(run);
  aigw_lthread_free(t);
}

static void on_timer(uv_timer_t *h) {
  lua_timer_t *tm = h->data;
  aigw_gen_t *g = tm->gen;
  if (tm->interval_ms && tm->running) return; /* the last tick is still busy */
  lua_State *L = g->L;
  run_t *run = aigw_try_malloc(sizeof *run);
  if (run == NULL) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, tm->fn_ref);
  lua_rawgeti(L, -1, 1);
  aigw_lthread_t *t = aigw_lthread_new(g, run, callback_done);
  if (t == NULL) {
    lua_pop(L, 1);
    aigw_free(run);
    return;
  }
  lua_State *co = t->co;
  lua_rawgeti(L, -1, 2);
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_pushboolean(co, 0); /* premature */
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, -1, 3 + i);
    lua_xmove(L, co, 1);
  }
  lua_pop(L, 1);
  run->t = t;
  run->timer = tm;
  tm->running++;
  aigw_loop_t *loop = g->loop;
  run->next = loop->timer_runs;
  run->pprev = (run_t **)&loop->timer_runs;
  if (run->next) run->next->pprev = &run->next;
  loop->timer_runs = run;
  if (tm->interval_ms == 0) {
    /* A one-shot timer is done once started; the run keeps the callback. */
    tm->running--;
    run->timer = NULL;
    timer_close(tm);
  }
  aigw_lthread_start(t, n + 1);
}

static int add_timer(lua_State *L, int repeat) {
  const char *what = repeat ? "aigw.timer.every" : "aigw.timer.at";
  double s = check_seconds(L, 1, what);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (repeat && s < 0.001) return luaL_error(L, "%s: the interval must be at least 0.001 s", what);
  lua_getfield(L, LUA_REGISTRYINDEX, "aigw.gen");
  aigw_gen_t *g = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (g == NULL) return luaL_error(L, "%s: no generation", what);
  if (g->retired) return luaL_error(L, "%s: this generation has been replaced by a reload", what);
  aigw_loop_t *loop = g->loop;
  if (loop->draining) return luaL_error(L, "%s: the worker is stopping", what);
  int nargs = lua_gettop(L) - 2;
  lua_createtable(L, nargs + 2, 0);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, 1);
  lua_pushinteger(L, nargs);
  lua_rawseti(L, -2, 2);
  for (int i = 0; i < nargs; i++) {
    lua_pushvalue(L, 3 + i);
    lua_rawseti(L, -2, 3 + i);
  }
  lua_timer_t *tm = aigw_try_malloc(sizeof *tm);
  if (tm == NULL) return luaL_error(L, "%s: no memory", what);
  memset(tm, 0, sizeof *tm);
  tm->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  tm->gen = g;
  tm->id = ++loop->timer_ids;
  uint64_t ms = (uint64_t)llround(s * 1000.0);
  tm->interval_ms = repeat ? ms : 0;
  /* From now, not from the loop's cached time (Lua may have run a while). */
  uv_update_time(&loop->uv);
  uv_timer_init(&loop->uv, &tm->h);
  tm->h.data = tm;
  uv_timer_start(&tm->h, on_timer, ms, tm->interval_ms);
  tm->next = g->timers;
  tm->pprev = &g->timers;
  if (tm->next) tm->next->pprev = &tm->next;
  g->timers = tm;
  lua_pushinteger(L, tm->id);
  return 1;
}

static int core_timer_at(lua_State *L) { return add_timer(L, 0); }
static int core_timer_every(lua_State *L) { return add_timer(L, 1); }

static int core_timer_cancel(lua_State *L) {
  lua_Integer id = luaL_checkinteger(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, "aigw.gen");
  aigw_gen_t *g = lua_touserdata(L, -1);
  for (lua_timer_t *tm = g ? g->timers : NULL; tm; tm = tm->next) {
    if (tm->id == id) {
      timer_close(tm);
      lua_pushboolean(L, 1);
      return 1;
    }
  }
  lua_pushboolean(L, 0);
  return 1;
}

static int core_timer_count(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "aigw.gen");
  aigw_gen_t *g = lua_touserdata(L, -1);
  int n = 0;
  for (lua_timer_t *tm = g ? g->timers : NULL; tm; tm = tm->next) n++;
  lua_pushinteger(L, n);
  return 1;
}

void aigw__timers_cancel(aigw_gen_t *g) {
  while (g->timers) timer_close(g->timers);
}

void aigw__timers_stop_runs(aigw_loop_t *loop) {
  while (loop->timer_runs) {
    run_t *run = loop->timer_runs;
    run_unlink(run);
    if (run->timer && --run->timer->running == 0 && run->timer->cancelled == 2)
      aigw_free(run->timer);
    aigw_lthread_t *t = run->t;
    aigw_free(run);
    aigw_lthread_free(t);
  }
}

void aigw__lua_register_timer(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"sleep", core_sleep},
      {"timer_at", core_timer_at},
      {"timer_every", core_timer_every},
      {"timer_cancel", core_timer_cancel},
      {"timer_count", core_timer_count},
      {NULL, NULL},
  };
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
}
