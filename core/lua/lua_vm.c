/* lua_vm.c -- a worker's VMs: making a Lua state with the aigw_core module,
 * aigw.exit, coroutines that hand their request on, and VM generations
 * (built, made current, retired, closed at their last reference). How a
 * request runs in a generation is lua_phases.c's. */
#include "lua/lua_vm.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "http/http_hooks.h"
#include "lua/watchdog.h"
#include "upstream/upstream.h"

extern int luaopen_cjson(lua_State *L);
extern int luaopen_cjson_safe(lua_State *L);

/* A coroutine inherits the exdata of the thread that creates it (LuaJIT
 * copies both slots into a new thread), and aigw.request finds the request
 * in exdata. One a plugin keeps past its request (in a module table) and
 * resumes later would read a request that has ended: its struct freed, or
 * recycled for another client's request. So coroutine.resume and the
 * functions of coroutine.wrap hand the resumer's exdata to the coroutine on
 * every resume: it sees the request running now, or none (a timer, init).
 * exdata2 goes too, so aigw_lthread_current still tells a plugin's
 * coroutine from the request's own. */
static void co_adopt(lua_State *L, lua_State *co) {
  if (co == NULL || co == L) return;
  lua_setexdata(co, lua_getexdata(L));
  lua_setexdata2(co, lua_getexdata2(L));
}

/* coroutine.resume(co, ...); upvalue 1: LuaJIT's. */
static int co_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  if (co == NULL) return luaL_argerror(L, 1, "coroutine expected");
  co_adopt(L, co);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* What coroutine.wrap returns; upvalues: LuaJIT's wrapped function, and
 * its coroutine. */
static int co_wrapped(lua_State *L) {
  co_adopt(L, lua_tothread(L, lua_upvalueindex(2)));
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* coroutine.wrap(f); upvalue 1: LuaJIT's, whose function keeps its
 * coroutine as its first upvalue. */
static int co_wrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, 1, 1);
  if (lua_getupvalue(L, 1, 1) == NULL || !lua_isthread(L, -1))
    return luaL_error(L, "coroutine.wrap: no coroutine in the wrapped function");
  lua_pushcclosure(L, co_wrapped, 2);
  return 1;
}

static void replace_coroutine_functions(lua_State *L) {
  lua_getglobal(L, "coroutine");
  lua_getfield(L, -1, "resume");
  lua_pushcclosure(L, co_resume, 1);
  lua_setfield(L, -2, "resume");
  lua_getfield(L, -1, "wrap");
  lua_pushcclosure(L, co_wrap, 1);
  lua_setfield(L, -2, "wrap");
  lua_pop(L, 1);
}

lua_State *aigw_lua_new_state(const char *prefix) {
  lua_State *L = luaL_newstate();
  if (L == NULL) return NULL;
  luaL_openlibs(L);
  replace_coroutine_functions(L);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_cjson);
  lua_setfield(L, -2, "cjson");
  lua_pushcfunction(L, luaopen_cjson_safe);
  lua_setfield(L, -2, "cjson.safe");
  lua_pop(L, 1);
  lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s/plugins/?.lua", prefix, prefix, prefix);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, "");
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
  /* aigw_core: the C functions that are not hot enough for the FFI, or
   * that must yield (the FFI cannot). */
  lua_newtable(L);
  aigw__lua_register_target(L);
  aigw__lua_register_timer(L);
  aigw__lua_register_admin(L);
  aigw__lua_register_http(L);
  aigw__lua_register_attempt(L);
  aigw__lua_register_redis(L);
  aigw__lua_register_body(L);
  aigw__lua_register_exit(L);
  lua_pushstring(L, prefix);
  lua_setfield(L, -2, "prefix");
  lua_pushstring(L, AIGW_VERSION);
  lua_setfield(L, -2, "version");
  lua_setglobal(L, "aigw_core");
  return L;
}

/* --- generations --- */

static void copy_error(lua_State *L, char *err, size_t errlen) {
  const char *msg = lua_tostring(L, -1);
  snprintf(err, errlen, "%s", msg ? msg : "(error object is not a string)");
}

/* The HTTP layer's way into Lua (http_hooks.h). */
static void install_http_hooks(void) {
  aigw_http_hooks = (aigw_http_hooks_t){
      .handle_request = aigw_lua_handle_request,
      .body_ready = aigw_lua_body_ready,
      .log_phase = aigw_lua_log_phase,
      .request_release = aigw_lua_request_release,
      .header_filter = aigw_lua_header_filter,
      .body_filter = aigw_lua_body_filter,
      .body_filter_usage = aigw_lua_body_filter_usage,
      .respond_exit = aigw_lua_respond_exit,
      .respond_upstream = aigw_lua_respond_upstream,
      .upstream_abort = aigw_upstream_abort,
      .upstream_drained = aigw_upstream_client_drained,
  };
}

static aigw_gen_t *gen_alloc(aigw_loop_t *loop, char *err, size_t errlen) {
  aigw_gen_t *g = aigw_try_malloc(sizeof *g);
  if (g == NULL) {
    snprintf(err, errlen, "no memory for a Lua generation");
    return NULL;
  }
  memset(g, 0, sizeof *g);
  g->loop = loop;
  g->refs = 1;
  g->handler_ref = g->route_ref = g->header_filter_ref = g->body_filter_ref = g->log_ref =
      LUA_NOREF;
  g->L = aigw_lua_new_state(loop->conf->prefix);
  if (g->L == NULL) {
    aigw_free(g);
    snprintf(err, errlen, "cannot create a Lua state");
    return NULL;
  }
  lua_State *L = g->L;
  lua_pushlightuserdata(L, loop);
  lua_setfield(L, LUA_REGISTRYINDEX, "aigw.worker");
  lua_pushlightuserdata(L, g);
  lua_setfield(L, LUA_REGISTRYINDEX, "aigw.gen");
  lua_getglobal(L, "aigw_core");
  lua_pushinteger(L, loop->id);
  lua_setfield(L, -2, "worker_id");
  lua_pushinteger(L, loop->host && loop->host->nworkers ? loop->host->nworkers : 1);
  lua_setfield(L, -2, "worker_count");
  lua_pop(L, 1);
  g->sync = lua_newthread(L);
  g->sync_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return g;
}

static void gen_close(aigw_gen_t *g) {
  aigw__timers_cancel(g);
  if (g->L) lua_close(g->L);
  aigw_free(g);
}

static int ref_field(lua_State *L, int idx, const char *name) {
  lua_getfield(L, idx, name);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

aigw_gen_t *aigw_gen_new(aigw_loop_t *loop, char *err, size_t errlen) {
  aigw_gen_t *g = gen_alloc(loop, err, errlen);
  if (g == NULL) return NULL;
  lua_State *L = g->L;
  aigw_lua_enter(loop->host ? loop : NULL, L);
  lua_getglobal(L, "require");
  lua_pushstring(L, "aigw.runtime");
  int rc = lua_pcall(L, 1, 1, 0);
  if (rc == 0) {
    lua_getfield(L, -1, "init_worker");
    lua_pushstring(L, loop->conf->path);
    lua_pushinteger(L, loop->id);
    rc = lua_pcall(L, 2, 1, 0);
  }
  aigw_lua_leave(loop->host ? loop : NULL);
  if (rc != 0) {
    copy_error(L, err, errlen);
    gen_close(g);
    return NULL;
  }
  if (!lua_istable(L, -1)) {
    snprintf(err, errlen, "aigw.runtime.init_worker returned no phases");
    gen_close(g);
    return NULL;
  }
  g->handler_ref = ref_field(L, -1, "handler");
  g->route_ref = ref_field(L, -1, "route");
  g->header_filter_ref = ref_field(L, -1, "header_filter");
  g->body_filter_ref = ref_field(L, -1, "body_filter");
  g->log_ref = ref_field(L, -1, "log");
  lua_getfield(L, -1, "filter_all");
  g->filter_all = (uint8_t)lua_toboolean(L, -1);
  lua_getfield(L, -2, "filter_errors");
  g->filter_errors = (uint8_t)lua_toboolean(L, -1);
  lua_settop(L, 0);
  if (g->handler_ref == LUA_NOREF) {
    snprintf(err, errlen, "aigw.runtime.init_worker returned no handler");
    gen_close(g);
    return NULL;
  }
  return g;
}

aigw_gen_t *aigw_gen_new_bare(aigw_loop_t *loop, char *err, size_t errlen) {
  install_http_hooks();
  return gen_alloc(loop, err, errlen);
}

void aigw_gen_unref(aigw_gen_t *g) {
  if (--g->refs > 0) return;
  aigw_loop_t *loop = g->loop;
  for (aigw_gen_t **p = &loop->retired; *p; p = &(*p)->next) {
    if (*p == g) {
      *p = g->next;
      break;
    }
  }
  aigw_log_debug("generation %lu closed", g->id);
  gen_close(g);
  aigw_lua_note_memory(loop);
}

void aigw_gen_retire(aigw_gen_t *g) {
  g->retired = 1;
  aigw__timers_cancel(g);
  g->next = g->loop->retired;
  g->loop->retired = g;
  aigw_gen_unref(g);
}

size_t aigw_gen_memory_kb(aigw_gen_t *g) { return (size_t)lua_gc(g->L, LUA_GCCOUNT, 0); }

void aigw_lua_note_memory(aigw_loop_t *loop) {
  if (loop->gen)
    atomic_store_explicit(&loop->stat_lua_kb, aigw_gen_memory_kb(loop->gen), memory_order_relaxed);
  int n = 0;
  size_t kb = 0;
  for (aigw_gen_t *g = loop->retired; g; g = g->next, n++) kb += aigw_gen_memory_kb(g);
  atomic_store_explicit(&loop->stat_retired, n, memory_order_relaxed);
  atomic_store_explicit(&loop->stat_retired_kb, kb, memory_order_relaxed);
}

int aigw_lua_worker_init(aigw_loop_t *loop, char *err, size_t errlen) {
  install_http_hooks();
  aigw_gen_t *g = aigw_gen_new(loop, err, errlen);
  if (g == NULL) return -1;
  g->id = 1;
  loop->gen = g;
  return 0;
}

void aigw_lua_worker_close(aigw_loop_t *loop) {
  aigw_gen_t *g = loop->gen;
  loop->gen = NULL;
  if (g) aigw_gen_retire(g);
  /* Whatever is left is held by threads that never finished: close it. */
  while (loop->retired) {
    g = loop->retired;
    loop->retired = g->next;
    gen_close(g);
  }
}
