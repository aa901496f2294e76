/* lua_attempt.c -- aigw_core.proxy_attempt: hands the request to one
 * upstream target in a way that can still be taken back (upstream.c's
 * attempts), for the runtime's failover loop (lua/aigw/engine/failover.lua).
 *
 *   local op = aigw_core.attempt_op()
 *   status, head, body = aigw_core.proxy_attempt(op, target, path, body, lines,
 *                                                ttfb_timeout, timeout)
 *   -- or nil, code, message, client_status
 *
 * Like exec(2), a successful call does not return: once the upstream's
 * first body byte is in, the exchange belongs to the core and streams to
 * the client as a proxy decision would, and the request's thread stays
 * parked until the request is released. The call returns only when the
 * attempt failed before anything reached the client: with the upstream's
 * error status, its header lines and its body (at most 1 MiB), or with nil,
 * an error code ("upstream_timeout", "upstream_connect_failed",
 * "bad_gateway", ...), a message and the status the client would get for
 * it. Timeouts are in seconds; 0 or nil: the first-byte deadline is off and
 * the target's total timeout bounds the exchange.
 *
 * The caller (a Lua function) keeps op, target, path, body and lines in
 * its locals while it waits, so the op the exchange calls back and the
 * strings it points into live as long as it does: the request aborts its
 * exchange before it lets go of its thread. An op serves one attempt. */
#include <lauxlib.h>
#include <string.h>

#include "lua/lthread.h"
#include "lua/lua_vm.h"
#include "upstream/upstream.h"

typedef struct {
  aigw_attempt_t a;  /* first: failed() gets &op->a */
  aigw_lthread_t *t; /* the thread waiting, or NULL */
  uint8_t starting;  /* inside aigw_upstream_attempt */
  uint8_t done;
} attempt_op_t;

static int push_outcome(attempt_op_t *op, lua_State *co) {
  aigw_attempt_t *a = &op->a;
  lua_checkstack(co, 4);
  if (a->status) {
    lua_pushinteger(co, a->status);
    lua_pushlstring(co, a->head.data ? a->head.data : "", a->head.len);
    lua_pushlstring(co, a->body.data ? a->body.data : "", a->body.len);
    aigw_buf_free(&a->head);
    aigw_buf_free(&a->body);
    return 3;
  }
  lua_pushnil(co);
  lua_pushstring(co, a->code ? a->code : "bad_gateway");
  lua_pushstring(co, a->msg);
  lua_pushinteger(co, a->fail_status);
  return 4;
}

static void on_failed(aigw_attempt_t *a) {
  attempt_op_t *op = (attempt_op_t *)a;
  op->done = 1;
  if (op->starting) return; /* failed at once: the call returns the outcome */
  aigw_lthread_t *t = op->t;
  op->t = NULL;
  if (t == NULL) { /* no one waits (cannot happen: see cancel) */
    aigw_buf_free(&a->head);
    aigw_buf_free(&a->body);
    return;
  }
  aigw_lthread_resume(t, push_outcome(op, t->co));
}

/* The thread went away (the request ended): the request has already
 * aborted its exchange, which never calls back after that. */
static void cancel(void *p) { ((attempt_op_t *)p)->t = NULL; }

static uint64_t seconds_ms(lua_State *L, int idx) {
  lua_Number s = luaL_optnumber(L, idx, 0);
  if (s <= 0) return 0;
  if (s > 86400 * 365) s = 86400 * 365;
  uint64_t ms = (uint64_t)(s * 1000);
  return ms ? ms : 1;
}

#define OP_MT "aigw.attempt.op"

static int core_attempt_op(lua_State *L) {
  attempt_op_t *op = lua_newuserdata(L, sizeof *op);
  memset(op, 0, sizeof *op);
  luaL_getmetatable(L, OP_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static int core_proxy_attempt(lua_State *L) {
  aigw_req_t *r = lua_getexdata(L);
  if (r == NULL) return luaL_error(L, "proxy_attempt: there is no request here");
  aigw_lthread_t *t = aigw_lthread_current(L);
  if (t == NULL) return aigw_lthread_cannot_yield(L, "proxy_attempt");
  if (r->up != NULL || r->responded)
    return luaL_error(L, "proxy_attempt: the request already has an upstream or a response");
  if (!r->complete) return luaL_error(L, "proxy_attempt: the request body has not been read");
  attempt_op_t *op = luaL_checkudata(L, 1, OP_MT);
  if (op->a.failed) return luaL_argerror(L, 1, "an op that served an attempt already");
  aigw_target_t **tp = luaL_checkudata(L, 2, "aigw.target");
  if (*tp == NULL) return luaL_argerror(L, 2, "a released target");
  size_t plen, blen = 0, llen = 0;
  const char *path = luaL_checklstring(L, 3, &plen);
  const char *body = lua_isnoneornil(L, 4) ? NULL : luaL_checklstring(L, 4, &blen);
  const char *lines = lua_isnoneornil(L, 5) ? NULL : luaL_checklstring(L, 5, &llen);
  uint64_t ttfb = seconds_ms(L, 6), total = seconds_ms(L, 7);
  op->a.failed = on_failed;
  op->a.ttfb_ms = ttfb;
  op->a.total_ms = total;
  op->starting = 1;
  aigw_upstream_attempt(r, *tp, path, plen, body, blen, lines, llen, &op->a);
  op->starting = 0;
  if (op->done) return push_outcome(op, L);
  op->t = t;
  return aigw_lthread_wait(L, t, op, cancel);
}

/* aigw_core.request_head_time(): when the current request's attempt sent
 * its head to the client (seconds on aigw's monotonic clock), or nil. */
static int core_request_head_time(lua_State *L) {
  aigw_req_t *r = lua_getexdata(L);
  if (r == NULL || r->head_ns == 0) return 0;
  lua_pushnumber(L, (lua_Number)r->head_ns / 1e9);
  return 1;
}

void aigw__lua_register_attempt(lua_State *L) {
  /* No __gc (a finaliser per request is not free): an error answer's
   * buffers always leave through push_outcome, since a request aborts its
   * exchange, which then never calls back, before it lets go of the op. */
  luaL_newmetatable(L, OP_MT);
  lua_pop(L, 1);
  lua_pushcfunction(L, core_attempt_op);
  lua_setfield(L, -2, "attempt_op");
  lua_pushcfunction(L, core_proxy_attempt);
  lua_setfield(L, -2, "proxy_attempt");
  lua_pushcfunction(L, core_request_head_time);
  lua_setfield(L, -2, "request_head_time");
}
