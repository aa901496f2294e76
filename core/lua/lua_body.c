/* lua_body.c -- aigw_core.read_body(): a request's Lua waits for its body.
 *
 * A request whose body has not arrived with its head is handed to Lua when
 * the head is complete, so the access phase (gateway keys, limits) decides
 * before a byte of body is read or buffered. The body is read only when Lua
 * asks for it: the runtime does after the access phase, and so does any
 * aigw.request function that needs it (get_body, get_json, ...), as
 * OpenResty's ngx.req.read_body(). The request itself is the operation the
 * lthread waits on (r->body_waiter): no allocation. The runtime itself does
 * not wait here: its handler returns aigw_core.need_body at the end of the
 * access phase and route(ctx) is started when the body is in (lua_vm.c,
 * await_body), which keeps the request path compiled. */
#include <lauxlib.h>

#include "http/http_conn.h"
#include "lua/lthread.h"
#include "lua/lua_vm.h"

#define AIGW_EXPORT __attribute__((visibility("default"), used))

AIGW_EXPORT int aigw_ffi_req_body_complete(aigw_req_t *r) { return r->complete; }

static void body_wait_cancel(void *op) {
  aigw_req_t *r = op;
  r->body_waiter = NULL;
}

/* true when the body is in; waits for it in a request's own thread; else
 * nil and why. A request that fails meanwhile (too large, too slow, client
 * gone) has answered or ended: its thread is never resumed. */
static int core_read_body(lua_State *L) {
  aigw_req_t *r = lua_getexdata(L);
  if (r == NULL) return luaL_error(L, "no request in this context");
  if (r->complete) {
    lua_pushboolean(L, 1);
    return 1;
  }
  aigw_lthread_t *t = aigw_lthread_current(L);
  if (t == NULL || r->lt != t || r->responded)
    return aigw_lthread_cannot_yield(L, "reading the request body");
  r->body_waiter = t;
  if (aigw_conn_read_body(r) != 0) {
    /* Complete after all (the bytes were already buffered). */
    r->body_waiter = NULL;
    lua_pushboolean(L, 1);
    return 1;
  }
  return aigw_lthread_wait(L, t, r, body_wait_cancel);
}

void aigw_lua_body_ready(aigw_req_t *r) {
  aigw_lthread_t *t = r->body_waiter;
  if (t != NULL) {
    r->body_waiter = NULL;
    lua_pushboolean(t->co, 1);
    aigw_lthread_resume(t, 1);
    return;
  }
  if (r->route_after_body && r->lt != NULL) {
    /* The handler returned at the end of its access phase (need_body),
     * leaving ctx on its coroutine: route(ctx) starts it again. */
    r->route_after_body = 0;
    t = r->lt;
    lua_rawgeti(t->co, LUA_REGISTRYINDEX, t->gen->route_ref);
    lua_insert(t->co, 1);
    aigw_lthread_start(t, 1);
  }
}

void aigw__lua_register_body(lua_State *L) {
  lua_pushcfunction(L, core_read_body);
  lua_setfield(L, -2, "read_body");
}
