/* lua_vm.c -- one LuaJIT VM per worker, and the single door through which a
 * request enters it.
 *
 * Each request runs in its own coroutine, whose exdata points at the request
 * so that the FFI accessors (lua_request.c) find it without a lookup. The
 * runtime's handler returns either a response (status, body, header lines)
 * or a proxy decision (target, path, body, header lines); every value the
 * core keeps pointing into stays on the coroutine's stack, referenced, until
 * the request is released. Errors become a 500 for that request only. */
#include "lua_vm.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "upstream.h"

extern int luaopen_cjson(lua_State *L);
extern int luaopen_cjson_safe(lua_State *L);

static int core_worker_id(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)(intptr_t)lua_touserdata(L, lua_upvalueindex(1)));
  return 1;
}

lua_State *aigw_lua_new_state(const char *prefix) {
  lua_State *L = luaL_newstate();
  if (L == NULL) return NULL;
  luaL_openlibs(L);
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
  /* aigw_core: the few C functions that are not hot enough for the FFI. */
  lua_newtable(L);
  aigw__lua_register_target(L);
  lua_pushstring(L, prefix);
  lua_setfield(L, -2, "prefix");
  lua_pushstring(L, AIGW_VERSION);
  lua_setfield(L, -2, "version");
  lua_setglobal(L, "aigw_core");
  return L;
}

static void copy_error(lua_State *L, char *err, size_t errlen) {
  const char *msg = lua_tostring(L, -1);
  snprintf(err, errlen, "%s", msg ? msg : "(error object is not a string)");
}

int aigw_lua_worker_init(aigw_worker_t *w, char *err, size_t errlen) {
  lua_State *L = aigw_lua_new_state(w->conf->prefix);
  if (L == NULL) {
    snprintf(err, errlen, "cannot create a Lua state");
    return -1;
  }
  w->L = L;
  w->handler_ref = w->log_ref = LUA_NOREF;
  lua_getglobal(L, "aigw_core");
  lua_pushlightuserdata(L, (void *)(intptr_t)w->id);
  lua_pushcclosure(L, core_worker_id, 1);
  lua_setfield(L, -2, "worker_id");
  lua_pop(L, 1);

  lua_getglobal(L, "require");
  lua_pushstring(L, "aigw.runtime");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    copy_error(L, err, errlen);
    return -1;
  }
  lua_getfield(L, -1, "init_worker");
  lua_pushstring(L, w->conf->path);
  lua_pushinteger(L, w->id);
  if (lua_pcall(L, 2, 2, 0) != 0) {
    copy_error(L, err, errlen);
    return -1;
  }
  if (!lua_isfunction(L, -2)) {
    snprintf(err, errlen, "aigw.runtime.init_worker returned no handler");
    return -1;
  }
  if (lua_isfunction(L, -1)) w->log_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else lua_pop(L, 1);
  w->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, 0);
  return 0;
}

void aigw_lua_worker_close(aigw_worker_t *w) {
  if (w->L) lua_close(w->L);
  w->L = NULL;
}

void aigw_lua_request_release(aigw_req_t *r) {
  lua_State *L = r->conn->w->L;
  if (r->co) {
    lua_setexdata(r->co, NULL);
    r->co = NULL;
  }
  if (r->co_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, r->co_ref);
  if (r->ctx_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, r->ctx_ref);
  r->co_ref = r->ctx_ref = LUA_NOREF;
}

static void internal_error(aigw_req_t *r, lua_State *co, const char *what) {
  lua_State *L = r->conn->w->L;
  const char *msg = lua_tostring(co, -1);
  /* The traceback of the failed coroutine, for the log only. */
  luaL_traceback(L, co, msg ? msg : "(error object is not a string)", 0);
  aigw_log_error("request %s: %s: %s", r->id, what, lua_tostring(L, -1));
  lua_pop(L, 1);
  aigw_respond_error(r, 500, "internal_error", "internal error in the gateway");
}

/* The handler's results: (status, body, headers) or ("proxy", target, path,
 * body, headers). */
static void act(aigw_req_t *r, lua_State *co) {
  int n = lua_gettop(co);
  if (n >= 1 && lua_type(co, 1) == LUA_TNUMBER) {
    int status = (int)lua_tointeger(co, 1);
    size_t blen = 0, hlen = 0;
    const char *body = n >= 2 ? lua_tolstring(co, 2, &blen) : NULL;
    const char *hdrs = n >= 3 ? lua_tolstring(co, 3, &hlen) : NULL;
    if (status < 200 || status > 599) {
      lua_pushfstring(co, "invalid status %d returned by the plugin chain", status);
      internal_error(r, co, "handler");
      return;
    }
    aigw_respond(r, status, hdrs, hlen, body, blen);
    return;
  }
  if (n >= 3 && lua_type(co, 1) == LUA_TSTRING && strcmp(lua_tostring(co, 1), "proxy") == 0) {
    aigw_target_t **tp = luaL_testudata(co, 2, "aigw.target");
    size_t plen = 0, blen = 0, elen = 0;
    const char *path = lua_tolstring(co, 3, &plen);
    const char *body = n >= 4 ? lua_tolstring(co, 4, &blen) : NULL;
    const char *extra = n >= 5 ? lua_tolstring(co, 5, &elen) : NULL;
    if (tp == NULL || *tp == NULL || path == NULL) {
      lua_pushstring(co, "bad proxy decision from the plugin chain (target, path expected)");
      internal_error(r, co, "handler");
      return;
    }
    /* The values stay on the coroutine's stack, so the pointers stay valid. */
    aigw_upstream_start(r, *tp, path, plen, body, blen, extra, elen);
    return;
  }
  lua_pushstring(co, "the plugin chain returned no decision");
  internal_error(r, co, "handler");
}

void aigw_lua_handle_request(aigw_req_t *r) {
  aigw_worker_t *w = r->conn->w;
  lua_State *L = w->L;
  lua_State *co = lua_newthread(L);
  r->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  r->co = co;
  lua_setexdata(co, r);
  lua_rawgeti(co, LUA_REGISTRYINDEX, w->handler_ref);
  /* ctx: the per-request table every phase of this request shares. */
  lua_createtable(co, 0, 8);
  if (w->log_ref != LUA_NOREF) {
    lua_pushvalue(co, -1);
    r->ctx_ref = luaL_ref(co, LUA_REGISTRYINDEX);
  }
  int rc = lua_resume(co, 1);
  if (rc == 0) {
    act(r, co);
  } else if (rc == LUA_YIELD) {
    lua_pushstring(co, "a plugin yielded, which is not supported in this phase");
    internal_error(r, co, "handler");
  } else {
    internal_error(r, co, "plugin error");
  }
}

void aigw_lua_log_phase(aigw_req_t *r) {
  aigw_worker_t *w = r->conn->w;
  if (w->log_ref == LUA_NOREF || r->ctx_ref == LUA_NOREF || r->logged) return;
  r->logged = 1;
  lua_State *L = w->L;
  lua_State *co = lua_newthread(L);
  lua_setexdata(co, r);
  lua_rawgeti(co, LUA_REGISTRYINDEX, w->log_ref);
  lua_rawgeti(co, LUA_REGISTRYINDEX, r->ctx_ref);
  lua_pushinteger(co, r->status);
  int rc = lua_resume(co, 2);
  if (rc != 0) {
    const char *msg = lua_tostring(co, -1);
    aigw_log_error("request %s: log phase: %s", r->id, rc == LUA_YIELD ? "yield not allowed" : msg ? msg : "?");
  }
  lua_setexdata(co, NULL);
  lua_pop(L, 1);
}
