/* lua_http.c -- the C half of aigw.http.request (lua/aigw/http.lua): one
 * upstream exchange (upstream.c, with a caller's sink) per call, waited on
 * by the calling lthread.
 *
 *   local op = aigw_core.http_op()
 *   status, headers, body = aigw_core.http_request(op, target, method, path, lines,
 *       body, timeout, max_body, stream, keepalive, add_host, add_user_agent,
 *       target_timeouts)   -- the last: the target's connect/read timeouts too
 *   piece = aigw_core.http_read(op)     -- stream: the next piece, nil at the end
 *   aigw_core.http_close(op)            -- abandons the exchange
 *
 * http_request waits for the whole response, or with `stream` for its head
 * (body then nil); http_read waits for the next body piece. Both return
 * nil, err on failure. Arguments are checked by http.lua; misuse raises.
 * The core checks the method, path and lines once more where it builds the
 * head (header_lines.h): a bad one gives nil, "bad request head: ...". 
 *
 * The op is a Lua userdata holding the sink, so its memory is Lua's. The
 * target and the body string are kept in its environment table for as long
 * as the op lives; the exchange may point into both. While the thread waits,
 * the op is kept alive by the caller's stack (http.lua holds it in a local);
 * if the thread goes away, the cancel function aborts the exchange at once.
 * A streamed exchange paused between pieces belongs to the op: when the op
 * is collected, __gc aborts it. */
#include <lauxlib.h>
#include <math.h>
#include <string.h>

#include "lua/lthread.h"
#include "lua/lua_vm.h"
#include "upstream/upstream.h"

#define OP_MT "aigw.http.op"

typedef struct {
  aigw_upstream_sink_t sink; /* first: notify gets &op->sink */
  aigw_lthread_t *t;         /* the thread waiting on this op, or NULL */
  uint8_t started;
  uint8_t want_head; /* the waiting call is http_request */
} http_op_t;

static http_op_t *check_op(lua_State *L) { return luaL_checkudata(L, 1, OP_MT); }

static void op_release(http_op_t *op) {
  if (op->sink.up) aigw_upstream_abort(op->sink.up);
  aigw_buf_free(&op->sink.head);
  aigw_buf_free(&op->sink.body);
}

static int push_err(lua_State *co, const char *err) {
  lua_pushnil(co);
  lua_pushstring(co, err);
  return 2;
}

/* Header lines as a table: lower-case names; repeated headers joined with
 * ", ", except set-cookie, which is always a list. Lowers the names in
 * place. */
static void push_headers(lua_State *co, char *p, size_t len) {
  lua_createtable(co, 0, 8);
  char *end = p + len;
  while (p < end) {
    char *eol = memchr(p, '\n', (size_t)(end - p));
    if (eol == NULL) eol = end;
    char *colon = memchr(p, ':', (size_t)(eol - p));
    if (colon != NULL) {
      size_t nl = (size_t)(colon - p);
      for (size_t i = 0; i < nl; i++)
        if (p[i] >= 'A' && p[i] <= 'Z') p[i] = (char)(p[i] + 32);
      const char *v = colon + 1, *ve = eol;
      if (ve > v && ve[-1] == '\r') ve--;
      while (v < ve && (*v == ' ' || *v == '\t')) v++;
      while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      int cookie = nl == 10 && memcmp(p, "set-cookie", 10) == 0;
      lua_pushlstring(co, p, nl);
      lua_pushvalue(co, -1);
      lua_rawget(co, -3);
      if (cookie) {
        if (lua_isnil(co, -1)) {
          lua_pop(co, 1);
          lua_createtable(co, 2, 0);
          lua_pushvalue(co, -2);
          lua_pushvalue(co, -2);
          lua_rawset(co, -5);
        }
        lua_pushlstring(co, v, (size_t)(ve - v));
        lua_rawseti(co, -2, (int)lua_objlen(co, -2) + 1);
        lua_pop(co, 2);
      } else if (lua_isnil(co, -1)) {
        lua_pop(co, 1);
        lua_pushlstring(co, v, (size_t)(ve - v));
        lua_rawset(co, -3);
      } else {
        lua_pushliteral(co, ", ");
        lua_pushlstring(co, v, (size_t)(ve - v));
        lua_concat(co, 3);
        lua_rawset(co, -3);
      }
    }
    p = eol + 1;
  }
}

/* The results for the call the thread waits in, pushed onto co. */
static int push_results(http_op_t *op, lua_State *co) {
  aigw_upstream_sink_t *s = &op->sink;
  lua_checkstack(co, 8);
  if (op->want_head) {
    op->want_head = 0;
    if (s->err) return push_err(co, s->err);
    if (!s->head_done) return push_err(co, "bad response");
    lua_pushinteger(co, s->status);
    push_headers(co, s->head.data, s->head.len);
    aigw_buf_free(&s->head);
    if (s->stream) return 2;
    lua_pushlstring(co, s->body.data ? s->body.data : "", s->body.len);
    aigw_buf_free(&s->body);
    return 3;
  }
  if (s->body.len) {
    lua_pushlstring(co, s->body.data, s->body.len);
    s->body.len = 0;
    return 1;
  }
  if (s->err) return push_err(co, s->err);
  if (s->eof) {
    lua_pushnil(co);
    return 1;
  }
  return push_err(co, "closed");
}

/* The exchange has something: resume the thread if one waits (never from
 * inside the C functions below: the thread is set only once they wait). */
static void op_notify(aigw_upstream_sink_t *s) {
  http_op_t *op = (http_op_t *)s;
  aigw_lthread_t *t = op->t;
  if (t == NULL) return; /* nobody waits: the state stays in the sink */
  op->t = NULL;
  aigw_lthread_resume(t, push_results(op, t->co));
}

/* The waiting thread went away: abort now, never resume. */
static void op_cancel(void *p) {
  http_op_t *op = p;
  op->t = NULL;
  if (op->sink.up) aigw_upstream_abort(op->sink.up);
}

static int http_op_new(lua_State *L) {
  http_op_t *op = lua_newuserdata(L, sizeof *op);
  memset(op, 0, sizeof *op);
  op->sink.notify = op_notify;
  luaL_getmetatable(L, OP_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static int http_request(lua_State *L) {
  http_op_t *op = check_op(L);
  aigw_target_t **tp = luaL_checkudata(L, 2, "aigw.target");
  aigw_fetch_t f;
  memset(&f, 0, sizeof f);
  f.method = luaL_checklstring(L, 3, &f.mlen);
  f.path = luaL_checklstring(L, 4, &f.plen);
  f.headers = luaL_checklstring(L, 5, &f.hlen);
  f.body = luaL_optlstring(L, 6, NULL, &f.blen);
  double timeout = luaL_checknumber(L, 7);
  double max_body = luaL_checknumber(L, 8);
  int stream = lua_toboolean(L, 9);
  f.keepalive = (uint8_t)lua_toboolean(L, 10);
  f.add_host = (uint8_t)lua_toboolean(L, 11);
  f.add_user_agent = (uint8_t)lua_toboolean(L, 12);
  f.target_timeouts = (uint8_t)lua_toboolean(L, 13);
  if (*tp == NULL) return luaL_error(L, "aigw.http: the target was freed");
  if (op->started) return luaL_error(L, "aigw.http: this request was already sent");
  if (!(timeout > 0) || !(max_body >= 0))
    return luaL_error(L, "aigw.http: bad timeout or max_body");
  aigw_lthread_t *t = aigw_lthread_current(L);
  aigw_loop_t *loop = t ? aigw_lua_loop(L) : NULL;
  if (loop == NULL) return aigw_lthread_cannot_yield(L, "aigw.http.request");
  /* The target and the body live as long as the op. */
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, 6);
  lua_rawseti(L, -2, 2);
  lua_setfenv(L, 1);
  op->started = 1;
  op->sink.stream = (uint8_t)stream;
  op->sink.max_body = max_body >= (double)SIZE_MAX ? SIZE_MAX : (size_t)max_body;
  if (timeout > 1e9) timeout = 1e9;
  f.timeout_ms = (uint64_t)llround(timeout * 1000.0);
  if (f.timeout_ms == 0) f.timeout_ms = 1;
  if (aigw_upstream_fetch(loop, *tp, &f, &op->sink) != 0) return push_err(L, "no memory");
  if (op->sink.err) return push_err(L, op->sink.err); /* failed at once (dns cache) */
  op->t = t;
  op->want_head = 1;
  return aigw_lthread_wait(L, t, op, op_cancel);
}

static int http_read(lua_State *L) {
  http_op_t *op = check_op(L);
  aigw_upstream_sink_t *s = &op->sink;
  if (!op->started || !s->stream) return luaL_error(L, "aigw.http: not a streamed response");
  if (s->body.len == 0 && !s->err && !s->eof) {
    aigw_lthread_t *t = aigw_lthread_current(L);
    if (t == NULL) return aigw_lthread_cannot_yield(L, "aigw.http.request");
    if (s->up == NULL) return push_err(L, "closed");
    /* May hand over bytes still inside OpenSSL before it returns. */
    aigw_upstream_sink_more(s->up);
    if (s->body.len == 0 && !s->err && !s->eof) {
      op->t = t;
      op->want_head = 0;
      return aigw_lthread_wait(L, t, op, op_cancel);
    }
  }
  return push_results(op, L);
}

static int http_close(lua_State *L) {
  op_release(check_op(L));
  return 0;
}

static int op_gc(lua_State *L) {
  http_op_t *op = lua_touserdata(L, 1);
  op->t = NULL;
  op_release(op);
  return 0;
}

void aigw__lua_register_http(lua_State *L) {
  if (luaL_newmetatable(L, OP_MT)) {
    lua_pushcfunction(L, op_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushstring(L, OP_MT);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"http_op", http_op_new},
                                 {"http_request", http_request},
                                 {"http_read", http_read},
                                 {"http_close", http_close},
                                 {NULL, NULL}};
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
}
