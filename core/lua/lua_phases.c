/* lua_phases.c -- the doors through which a request enters Lua: the plugin
 * chain in its own lthread, and the phases that run after it
 * (header_filter, body_filter, log) on the generation's sync thread.
 *
 * The chain returns either a response (status, body, headers) or a proxy
 * decision (target, path, body, headers); every value the core keeps
 * pointing into stays on the request coroutine's stack until the request is
 * released. aigw.exit yields a marker instead, from wherever it is called.
 * The later phases cannot wait (their thread is not an lthread), and each
 * sees the request through exdata and its ctx through a registry reference.
 * Errors become a 500 for that request only. */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "lua/lthread.h"
#include "lua/lua_vm.h"
#include "lua/watchdog.h"
#include "upstream/upstream.h"

/* --- aigw.exit --- */

/* The address of this is the marker aigw.exit yields. */
static const char exit_marker;

/* What the handler returns (aigw_core.need_body), with ctx, when its access
 * phase is done and the body has not all come: await_body keeps the
 * coroutine for route(ctx). */
static const char need_body_marker;

static int core_exit(lua_State *L) {
  if (lua_getexdata(L) == NULL) return luaL_error(L, "aigw.exit: there is no request here");
  aigw_lthread_t *t = aigw_lthread_current(L);
  if (t == NULL) {
    return luaL_error(L,
                      "aigw.exit: cannot be called here (it answers from access or "
                      "upstream, and not from inside a coroutine a plugin created)");
  }
  lua_settop(L, 3);
  lua_pushlightuserdata(L, (void *)&exit_marker);
  lua_insert(L, 1);
  return lua_yield(L, 4);
}

/* aigw.exit in header_filter, which runs where nothing may yield: the
 * answer is already in ctx._exit; raise, and keep raising at every
 * instruction until Lua returns to C (the hook goes in aigw_lua_leave), so
 * neither a plugin's pcall nor the code after it can carry on. */
static void exit_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_getfield(L, LUA_REGISTRYINDEX, "aigw.exit_error");
  lua_error(L);
}

static int core_exit_sync(lua_State *L) {
  lua_settop(L, 1);
  /* Only on a thread the core called into (no lthread: the sync thread),
   * which removes the hook when the call returns. A spec calling a phase
   * runner directly from its own lthread gets a plain error. */
  if (lua_getexdata2(L) == NULL) {
    lua_pushvalue(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "aigw.exit_error");
    aigw__lua_run.hooked = 1;
    lua_sethook(L, exit_hook, LUA_MASKCOUNT, 1);
  }
  return lua_error(L);
}

void aigw__lua_register_exit(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&need_body_marker);
  lua_setfield(L, -2, "need_body");
  lua_pushcfunction(L, core_exit);
  lua_setfield(L, -2, "exit");
  lua_pushcfunction(L, core_exit_sync);
  lua_setfield(L, -2, "exit_sync");
}

/* --- the request's plugin chain --- */

void aigw_lua_request_release(aigw_req_t *r) {
  aigw_lthread_t *t = r->lt;
  if (t == NULL) return;
  aigw_gen_t *g = t->gen;
  if (r->ctx_ref != LUA_NOREF) luaL_unref(g->L, LUA_REGISTRYINDEX, r->ctx_ref);
  r->ctx_ref = LUA_NOREF;
  r->lt = NULL;
  aigw_loop_t *loop = t->loop;
  aigw_lthread_free(t);
  aigw_lua_note_memory(loop);
}

static void internal_error(aigw_req_t *r, lua_State *co, const char *what) {
  lua_State *L = r->lt->gen->L;
  const char *msg = lua_tostring(co, -1);
  /* The traceback of the failed coroutine, for the log only. */
  luaL_traceback(L, co, msg ? msg : "(error object is not a string)", 0);
  aigw_log_error("request %s: %s: %s", r->id, what, lua_tostring(L, -1));
  lua_pop(L, 1);
  aigw_respond_error(r, 500, "internal_error", "internal error in the gateway");
}

static void sync_error(aigw_req_t *r, lua_State *S, const char *phase) {
  const char *msg = lua_tostring(S, -1);
  aigw_log_error("request %s: %s: %s", r->id, phase, msg ? msg : "(error object is not a string)");
  lua_settop(S, 0);
}

/* Calls a phase function on the generation's sync thread with the request
 * in exdata and its ctx first. nargs more arguments are on top of S. */
static int sync_call(aigw_req_t *r, int ref, int nargs, int nres) {
  aigw_gen_t *g = r->lt->gen;
  lua_State *S = g->sync;
  lua_rawgeti(S, LUA_REGISTRYINDEX, ref);
  lua_rawgeti(S, LUA_REGISTRYINDEX, r->ctx_ref);
  lua_insert(S, -2 - nargs);
  lua_insert(S, -2 - nargs);
  lua_setexdata(S, r);
  aigw_lua_enter(g->loop, S);
  int rc = lua_pcall(S, 1 + nargs, nres, 0);
  aigw_lua_leave(g->loop);
  lua_setexdata(S, NULL);
  return rc;
}

int aigw_lua_header_filter(aigw_req_t *r, int *status, const char **lines, size_t *len,
                           int from_upstream, const char *body, size_t blen) {
  aigw_gen_t *g = r->lt ? r->lt->gen : NULL;
  if (g == NULL || g->header_filter_ref == LUA_NOREF || r->ctx_ref == LUA_NOREF) return 0;
  /* Once per request: the error response a failed filter leads to is not
   * filtered again. */
  r->filter_headers = 0;
  lua_State *S = g->sync;
  lua_pushinteger(S, *status);
  lua_pushlstring(S, *lines ? *lines : "", *len);
  lua_pushboolean(S, from_upstream);
  int nargs = 3;
  if (body) {
    lua_pushlstring(S, body, blen);
    nargs = 4;
  }
  if (sync_call(r, g->header_filter_ref, nargs, 2) != 0) {
    lua_rawgeti(S, LUA_REGISTRYINDEX, r->ctx_ref);
    lua_getfield(S, -1, "_exit");
    int exited = lua_istable(S, -1);
    lua_pop(S, 2);
    if (exited) {
      lua_settop(S, 0);
      return 1;
    }
    sync_error(r, S, "header_filter");
    return -1;
  }
  if (lua_type(S, -2) != LUA_TNUMBER) { /* aigw.exit: ctx._exit holds the answer */
    lua_settop(S, 0);
    return 1;
  }
  /* The runtime keeps the returned head in ctx, so the pointer outlives
   * the stack slot. */
  *status = (int)lua_tointeger(S, -2);
  *lines = lua_tolstring(S, -1, len);
  lua_settop(S, 0);
  return 0;
}

static int body_filter_call(aigw_req_t *r, const char *in, size_t len, int eof, const char *err,
                            const char *usage, size_t ulen, const char **out, size_t *outlen);

int aigw_lua_body_filter(aigw_req_t *r, const char *in, size_t len, int eof, const char *err,
                         const char **out, size_t *outlen) {
  return body_filter_call(r, in, len, eof, err, NULL, 0, out, outlen);
}

int aigw_lua_body_filter_usage(aigw_req_t *r, const char *usage, size_t ulen) {
  const char *out;
  size_t olen;
  return body_filter_call(r, "", 0, 1, NULL, usage ? usage : "", usage ? ulen : 0, &out, &olen);
}

static int body_filter_call(aigw_req_t *r, const char *in, size_t len, int eof, const char *err,
                            const char *usage, size_t ulen, const char **out, size_t *outlen) {
  aigw_gen_t *g = r->lt ? r->lt->gen : NULL;
  if (g == NULL || g->body_filter_ref == LUA_NOREF || r->ctx_ref == LUA_NOREF) {
    *out = in;
    *outlen = len;
    return 0;
  }
  lua_State *S = g->sync;
  lua_pushlstring(S, in ? in : "", len);
  lua_pushboolean(S, eof);
  if (err) lua_pushstring(S, err);
  else lua_pushnil(S);
  lua_pushboolean(S, r->plugin_body);
  if (usage) lua_pushlstring(S, usage, ulen);
  else lua_pushnil(S);
  if (sync_call(r, g->body_filter_ref, 5, 2) != 0) {
    sync_error(r, S, "body_filter");
    return -1;
  }
  *out = lua_tolstring(S, -2, outlen); /* kept in ctx by the runtime */
  if (*out == NULL) {
    *out = "";
    *outlen = 0;
  }
  int ended = !eof && lua_toboolean(S, -1);
  lua_settop(S, 0);
  return ended ? 1 : 0;
}

/* The answer aigw.exit left in ctx.exit (status, body, header lines). */
void aigw_lua_respond_exit(aigw_req_t *r) {
  aigw_gen_t *g = r->lt->gen;
  lua_State *S = g->sync;
  lua_rawgeti(S, LUA_REGISTRYINDEX, r->ctx_ref);
  lua_getfield(S, -1, "_exit");
  if (!lua_istable(S, -1)) {
    lua_settop(S, 0);
    aigw_respond_error(r, 500, "internal_error", "internal error in the gateway");
    return;
  }
  lua_rawgeti(S, -1, 1);
  lua_rawgeti(S, -2, 2);
  lua_rawgeti(S, -3, 3);
  int status = (int)lua_tointeger(S, -3);
  size_t blen = 0, hlen = 0;
  const char *body = lua_tolstring(S, -2, &blen);
  const char *hdrs = lua_tolstring(S, -1, &hlen);
  r->filter_headers = r->filter_body = 0;
  /* ctx, and so the strings, live until the request is released. */
  lua_settop(S, 0);
  aigw_respond(r, status, hdrs, hlen, body, blen);
}

/* A response made in Lua goes through the filters like an upstream one;
 * so does an upstream's error answer held whole (from_upstream: the
 * header_filter phase gets its body too). */
static void respond_filtered(aigw_req_t *r, int status, const char *hdrs, size_t hlen,
                             const char *body, size_t blen, int from_upstream) {
  if (r->filter_headers) {
    int rc = aigw_lua_header_filter(r, &status, &hdrs, &hlen, from_upstream,
                                    from_upstream ? body : NULL, blen);
    if (rc == 1) {
      aigw_lua_respond_exit(r);
      return;
    }
    if (rc < 0) {
      aigw_respond_error(r, 500, "internal_error", "internal error in the gateway");
      return;
    }
  }
  /* An upstream's head may carry its own Date (the filters may have
   * dropped it): one Date either way. */
  if (from_upstream) r->has_date = (uint8_t)aigw_lines_have(hdrs ? hdrs : "", hlen, "date", 4);
  if (r->filter_body) {
    const char *out;
    size_t olen;
    if (aigw_lua_body_filter(r, body, blen, 1, NULL, &out, &olen) != 0) {
      aigw_respond_error(r, 500, "internal_error", "internal error in the gateway");
      return;
    }
    if (!r->observe_body) {
      body = out;
      blen = olen;
    }
  }
  aigw_respond(r, status, hdrs, hlen, body, blen);
}

static void respond_lua(aigw_req_t *r, int status, const char *hdrs, size_t hlen, const char *body,
                        size_t blen) {
  respond_filtered(r, status, hdrs, hlen, body, blen, 0);
}

void aigw_lua_respond_upstream(aigw_req_t *r, int status, const char *lines, size_t hlen,
                               const char *body, size_t blen) {
  if (r->lt == NULL) {
    aigw_respond(r, status, lines, hlen, body, blen);
    return;
  }
  respond_filtered(r, status, lines, hlen, body, blen, 1);
}

static int valid_status(int status) { return status >= 200 && status <= 599; }

/* The handler's access phase is done and the body has not all come: its
 * coroutine, which has returned and so may be started again, keeps ctx on
 * its stack, and route(ctx) runs on it once the body is in
 * (aigw_lua_body_ready). A second start rather than a yield: LuaJIT
 * compiles neither a yield nor the C call that makes it, so the code around
 * such a wait would run in the interpreter on every request. */
static void await_body(aigw_req_t *r, lua_State *co, int base) {
  if (r->lt->gen->route_ref == LUA_NOREF || !lua_istable(co, base + 1)) {
    lua_pushstring(co, "need_body from a handler without route(ctx)");
    internal_error(r, co, "handler");
    return;
  }
  lua_pushvalue(co, base + 1);
  lua_replace(co, 1);
  lua_settop(co, 1);
  r->route_after_body = 1;
  if (aigw_conn_read_body(r)) aigw_lua_body_ready(r);
}

/* The chain's results: (status, body, headers) or ("proxy", target, path,
 * body, headers); first at index base of co's stack. */
static void act(aigw_req_t *r, lua_State *co, int base) {
  int n = lua_gettop(co) - base + 1;
  if (n >= 1 && lua_touserdata(co, base) == (void *)&need_body_marker) {
    await_body(r, co, base);
    return;
  }
  if (n >= 1 && lua_type(co, base) == LUA_TNUMBER) {
    int status = (int)lua_tointeger(co, base);
    size_t blen = 0, hlen = 0;
    const char *body = n >= 2 ? lua_tolstring(co, base + 1, &blen) : NULL;
    const char *hdrs = n >= 3 ? lua_tolstring(co, base + 2, &hlen) : NULL;
    if (!valid_status(status)) {
      lua_pushfstring(co, "invalid status %d from the plugin chain", status);
      internal_error(r, co, "handler");
      return;
    }
    respond_lua(r, status, hdrs, hlen, body, blen);
    return;
  }
  if (n >= 3 && lua_type(co, base) == LUA_TSTRING && strcmp(lua_tostring(co, base), "proxy") == 0) {
    aigw_target_t **tp = luaL_testudata(co, base + 1, "aigw.target");
    size_t plen = 0, blen = 0, elen = 0;
    const char *path = lua_tolstring(co, base + 2, &plen);
    const char *body = n >= 4 ? lua_tolstring(co, base + 3, &blen) : NULL;
    const char *extra = n >= 5 ? lua_tolstring(co, base + 4, &elen) : NULL;
    if (tp == NULL || *tp == NULL || path == NULL) {
      lua_pushstring(co, "bad proxy decision from the plugin chain (target, path expected)");
      internal_error(r, co, "handler");
      return;
    }
    if (!r->complete) {
      /* The runtime reads the body before it routes: only a chain that
       * skipped it gets here. */
      lua_pushstring(co,
                     "proxy decision before the request body was read (aigw.request.read_body)");
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

static void request_done(aigw_lthread_t *t, int status) {
  aigw_req_t *r = t->owner;
  lua_State *co = t->co;
  if (status == 0) {
    act(r, co, 1);
  } else if (status == LUA_YIELD) {
    if (lua_touserdata(co, 1) == (void *)&exit_marker) {
      act(r, co, 2);
      return;
    }
    lua_pushstring(co,
                   "a plugin yielded outside the aigw API (coroutine.yield in the request's "
                   "own coroutine)");
    internal_error(r, co, "handler");
  } else {
    internal_error(r, co, "plugin error");
  }
}

void aigw_lua_handle_request(aigw_req_t *r) {
  aigw_loop_t *loop = r->conn->loop;
  aigw_gen_t *g = loop->gen;
  lua_State *L = g->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->handler_ref);
  aigw_lthread_t *t = aigw_lthread_new(g, r, request_done);
  if (t == NULL) {
    aigw_respond_error(r, 503, "no_memory", "no memory");
    return;
  }
  r->lt = t;
  lua_State *co = t->co;
  lua_setexdata(co, r);
  /* ctx: the per-request table every phase of this request shares. */
  lua_createtable(co, 0, 8);
  if (g->log_ref != LUA_NOREF || g->header_filter_ref != LUA_NOREF ||
      g->body_filter_ref != LUA_NOREF) {
    lua_pushvalue(co, -1);
    r->ctx_ref = luaL_ref(co, LUA_REGISTRYINDEX);
    r->filter_headers = g->header_filter_ref != LUA_NOREF && g->filter_all;
    r->filter_errors = g->header_filter_ref != LUA_NOREF && g->filter_errors;
  }
  aigw_lthread_start(t, 1);
}

void aigw_lua_log_phase(aigw_req_t *r) {
  if (r->lt == NULL || r->logged) return;
  aigw_gen_t *g = r->lt->gen;
  if (g->log_ref == LUA_NOREF || r->ctx_ref == LUA_NOREF) return;
  r->logged = 1;
  lua_pushinteger(g->sync, r->status);
  if (sync_call(r, g->log_ref, 1, 0) != 0) sync_error(r, g->sync, "log phase");
  lua_settop(g->sync, 0);
}
