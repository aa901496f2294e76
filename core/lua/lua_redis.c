/* lua_redis.c -- the C side of aigw.redis (lua/aigw/redis.lua).
 *
 *   aigw_core.redis_client(url, connect_timeout, timeout) -> client
 *   aigw_core.redis_call(client, cmd, ...)      -> reply | nil, err
 *   aigw_core.redis_pipeline(client, { {cmd, ...}, ... }) -> { replies } | nil, err
 *   aigw_core.redis_check_url(url)              -> nil | what is wrong
 *
 * A client is a userdata per VM generation; its connection belongs to the
 * worker (redis.c's per-worker clients, shared by generations with the same
 * settings) and is acquired on the first command. The calling lthread
 * yields while the commands are out and is resumed from the loop with the
 * converted replies:
 *   status, bulk string -> string; integer -> number; nil -> the null
 *   sentinel (a NULL light userdata, the same value as cjson.null);
 *   array -> table; an error reply -> (nil, "ERR ...") from call, and
 *   { false, "ERR ..." } inside a pipeline's list or an array.
 * Arguments are strings (binary-safe) or numbers; commands that would
 * change the shared connection's state are refused (an error is raised). */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "loop/loop.h"
#include "loop/redis.h"
#include "lua/lthread.h"

#define CLIENT_MT "aigw.redis_client"

typedef struct {
  aigw_redis_t *r; /* the worker's client, from the first command on */
  double connect_timeout, timeout;
  char url[];
} client_t;

static int client_gc(lua_State *L) {
  client_t *c = luaL_checkudata(L, 1, CLIENT_MT);
  if (c->r) aigw_redis_release(c->r);
  c->r = NULL;
  return 0;
}

static int client_tostring(lua_State *L) {
  luaL_checkudata(L, 1, CLIENT_MT);
  lua_pushstring(L, "aigw.redis client"); /* never the URL: it may hold a password */
  return 1;
}

static int core_redis_check_url(lua_State *L) {
  const char *url = luaL_checkstring(L, 1);
  aigw_redis_url_t u;
  char err[200];
  if (aigw_redis_parse_url(url, &u, err, sizeof err) != 0) {
    lua_pushstring(L, err);
    return 1;
  }
  aigw_redis_url_free(&u);
  return 0;
}

static int core_redis_client(lua_State *L) {
  size_t len;
  const char *url = luaL_checklstring(L, 1, &len);
  double ct = luaL_checknumber(L, 2), t = luaL_checknumber(L, 3);
  if (!(ct > 0) || !(t > 0)) return luaL_error(L, "redis: timeouts must be more than 0 seconds");
  aigw_redis_url_t u;
  char err[200];
  if (aigw_redis_parse_url(url, &u, err, sizeof err) != 0)
    return luaL_error(L, "redis: url: %s", err);
  aigw_redis_url_free(&u);
  client_t *c = lua_newuserdata(L, sizeof *c + len + 1);
  c->r = NULL;
  c->connect_timeout = ct;
  c->timeout = t;
  memcpy(c->url, url, len + 1);
  luaL_getmetatable(L, CLIENT_MT);
  lua_setmetatable(L, -2);
  /* In a worker's VM, take the worker's client now (it connects on the
   * first command): a reload's new generation then holds it before the old
   * one lets go, and the connection carries on. Elsewhere (aigw check)
   * there is no worker loop; the first command would take it. */
  aigw_loop_t *loop = aigw_lua_loop(L);
  if (loop && loop->dns) c->r = aigw_redis_acquire(loop, url, ct, t, err, sizeof err);
  return 1;
}

/* --- arguments --- */

/* The shortest of %.15g..%.17g that reads back as x; whole numbers in
 * decimal. */
static size_t format_number(lua_Number x, char *out, size_t size) {
  if (x == floor(x) && fabs(x) < 9.2e18) return (size_t)snprintf(out, size, "%lld", (long long)x);
  for (int prec = 15; prec <= 17; prec++) {
    int n = snprintf(out, size, "%.*g", prec, x);
    if (prec == 17 || strtod(out, NULL) == x) return (size_t)n;
  }
  return 0;
}

static int arg_error(lua_State *L, const char *fn, int argn, const char *msg) {
  luaL_where(L, 1);
  lua_pushfstring(L, "bad argument #%d to '%s' (%s)", argn, fn, msg);
  lua_concat(L, 2);
  return lua_error(L);
}

/* Makes the value at idx a string (numbers are formatted); raises for any
 * other type. */
static void to_arg(lua_State *L, int idx, const char *fn, int argn, int cmd) {
  int type = lua_type(L, idx);
  if (type == LUA_TSTRING) return;
  if (type == LUA_TNUMBER) {
    char buf[64];
    size_t n = format_number(lua_tonumber(L, idx), buf, sizeof buf);
    lua_pushlstring(L, buf, n);
    lua_replace(L, idx);
    return;
  }
  if (cmd > 0)
    lua_pushfstring(L, "command #%d, argument #%d: string or number expected, got %s", cmd, argn,
                    luaL_typename(L, idx));
  else lua_pushfstring(L, "string or number expected, got %s", luaL_typename(L, idx));
  arg_error(L, fn, cmd > 0 ? 1 : argn, lua_tostring(L, -1));
}

static int name_is(const char *s, size_t len, const char *name) {
  return len == strlen(name) && strncasecmp(s, name, len) == 0;
}

/* Commands that would change the state of the connection every request of
 * the worker shares, or break the order in which replies come back. */
static const char *refused(lua_State *L, int first, int argc) {
  static const char *const names[] = {
      "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE",
      "MONITOR",   "PMONITOR",   "SYNC",       "PSYNC",       "HELLO",        "RESET",
      "QUIT",      "SELECT",     "AUTH",       "WATCH",       "UNWATCH",      NULL};
  size_t len;
  const char *cmd = lua_tolstring(L, first, &len);
  for (int i = 0; names[i]; i++)
    if (name_is(cmd, len, names[i])) return names[i];
  if (argc >= 2 && name_is(cmd, len, "CLIENT")) {
    size_t sl;
    const char *sub = lua_tolstring(L, first + 1, &sl);
    if (name_is(sub, sl, "REPLY")) return "CLIENT REPLY";
  }
  return NULL;
}

static void refuse(lua_State *L, const char *fn, const char *what, const char *why) {
  luaL_where(L, 1);
  lua_pushfstring(L, "%s: %s is not allowed (%s)", fn, what, why);
  lua_concat(L, 2);
  lua_error(L);
}

static const char *SHARED = "the connection is shared by every request of the worker";

/* Appends the command held at stack slots first..first+argc-1 (strings). */
static int append_command(lua_State *L, aigw_buf_t *b, int first, int argc) {
  const char *small[16] = {0};
  size_t small_lens[16] = {0};
  const char **argv = small;
  size_t *lens = small_lens;
  if (argc > 16) {
    argv = aigw_try_malloc((size_t)argc * sizeof *argv);
    lens = aigw_try_malloc((size_t)argc * sizeof *lens);
    if (argv == NULL || lens == NULL) {
      aigw_free(argv);
      aigw_free(lens);
      return AIGW_ENOMEM_REQ;
    }
  }
  for (int i = 0; i < argc; i++) argv[i] = lua_tolstring(L, first + i, &lens[i]);
  int rc = aigw_redis_format(b, argc, argv, lens);
  if (argv != small) {
    aigw_free(argv);
    aigw_free(lens);
  }
  return rc;
}

/* --- waiting --- */

static void op_cancel(void *op) { aigw_redis_cancel(op); }

/* Pushes one reply; errors become { false, "message" }. */
static void push_reply(lua_State *co, const redisReply *x) {
  switch (x->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS: lua_pushlstring(co, x->str, x->len); break;
    case REDIS_REPLY_INTEGER: lua_pushnumber(co, (lua_Number)x->integer); break;
    case REDIS_REPLY_ARRAY:
      luaL_checkstack(co, 4, "redis reply nested too deeply");
      lua_createtable(co, x->elements < 0x7fffffff ? (int)x->elements : 0, 0);
      for (size_t i = 0; i < x->elements; i++) {
        push_reply(co, x->element[i]);
        lua_rawseti(co, -2, (int)i + 1);
      }
      break;
    case REDIS_REPLY_ERROR:
      lua_createtable(co, 2, 0);
      lua_pushboolean(co, 0);
      lua_rawseti(co, -2, 1);
      lua_pushlstring(co, x->str, x->len);
      lua_rawseti(co, -2, 2);
      break;
    default: /* REDIS_REPLY_NIL */ lua_pushlightuserdata(co, NULL); break;
  }
}

static void on_call_done(void *data, const char *err, redisReply **replies, int n) {
  aigw_lthread_t *t = data;
  lua_State *co = t->co;
  if (err) {
    lua_pushnil(co);
    lua_pushstring(co, err);
    aigw_lthread_resume(t, 2);
    return;
  }
  const redisReply *x = replies[0];
  if (x->type == REDIS_REPLY_ERROR) {
    lua_pushnil(co);
    lua_pushlstring(co, x->str, x->len);
    aigw_lthread_resume(t, 2);
    return;
  }
  push_reply(co, x);
  aigw_lthread_resume(t, 1);
}

static void on_pipeline_done(void *data, const char *err, redisReply **replies, int n) {
  aigw_lthread_t *t = data;
  lua_State *co = t->co;
  if (err) {
    lua_pushnil(co);
    lua_pushstring(co, err);
    aigw_lthread_resume(t, 2);
    return;
  }
  lua_createtable(co, n, 0);
  for (int i = 0; i < n; i++) {
    push_reply(co, replies[i]);
    lua_rawseti(co, -2, i + 1);
  }
  aigw_lthread_resume(t, 1);
}

/* Sends what b holds and yields; or returns nil, err. */
static int send_and_wait(lua_State *L, client_t *c, aigw_buf_t *b, size_t *lens, int n,
                         aigw_redis_cb cb, const char *what) {
  aigw_lthread_t *t = aigw_lthread_current(L);
  if (t == NULL) {
    aigw_buf_free(b);
    return aigw_lthread_cannot_yield(L, what);
  }
  if (c->r == NULL) {
    char err[200];
    c->r = aigw_redis_acquire(t->loop, c->url, c->connect_timeout, c->timeout, err, sizeof err);
    if (c->r == NULL) {
      aigw_buf_free(b);
      lua_pushnil(L);
      lua_pushfstring(L, "redis unavailable: %s", err);
      return 2;
    }
  }
  /* The loop's clock is cached: Lua may have run a while since it was read,
   * and the command's deadline counts from now. */
  uv_update_time(&t->loop->uv);
  const char *err = NULL;
  aigw_redis_op_t *op = aigw_redis_send(c->r, b->data, lens, n, cb, t, &err);
  aigw_buf_free(b);
  if (op == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, err ? err : "redis error");
    return 2;
  }
  return aigw_lthread_wait(L, t, op, op_cancel);
}

static int core_redis_call(lua_State *L) {
  client_t *c = luaL_checkudata(L, 1, CLIENT_MT);
  int top = lua_gettop(L), argc = top - 1;
  if (argc < 1) return arg_error(L, "call", 1, "a command name expected");
  for (int i = 2; i <= top; i++) to_arg(L, i, "call", i - 1, 0);
  if (lua_objlen(L, 2) == 0) return arg_error(L, "call", 1, "a command name expected");
  const char *no = refused(L, 2, argc);
  if (no) refuse(L, "aigw.redis.call", no, SHARED);
  size_t cl;
  const char *cmd = lua_tolstring(L, 2, &cl);
  if (name_is(cmd, cl, "MULTI"))
    refuse(L, "aigw.redis.call", "MULTI", "send MULTI ... EXEC in one aigw.redis.pipeline");
  aigw_buf_t b = {0};
  if (append_command(L, &b, 2, argc) != 0) {
    aigw_buf_free(&b);
    lua_pushnil(L);
    lua_pushstring(L, "no memory");
    return 2;
  }
  size_t len = b.len;
  return send_and_wait(L, c, &b, &len, 1, on_call_done, "aigw.redis.call");
}

static int core_redis_pipeline(lua_State *L) {
  client_t *c = luaL_checkudata(L, 1, CLIENT_MT);
  if (lua_type(L, 2) != LUA_TTABLE) {
    lua_pushfstring(L, "table expected, got %s", luaL_typename(L, 2));
    return arg_error(L, "pipeline", 1, lua_tostring(L, -1));
  }
  lua_settop(L, 2);
  int n = (int)lua_objlen(L, 2);
  if (n == 0) {
    lua_newtable(L);
    return 1;
  }
  size_t *lens = aigw_try_malloc((size_t)n * sizeof *lens);
  if (lens == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, "no memory");
    return 2;
  }
  aigw_buf_t b = {0};
  int in_multi = 0;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    if (lua_type(L, 3) != LUA_TTABLE) {
      aigw_free(lens);
      aigw_buf_free(&b);
      lua_pushfstring(L, "command #%d: table expected, got %s", i, luaL_typename(L, 3));
      return arg_error(L, "pipeline", 1, lua_tostring(L, -1));
    }
    int argc = (int)lua_objlen(L, 3);
    if (argc < 1) {
      aigw_free(lens);
      aigw_buf_free(&b);
      lua_pushfstring(L, "command #%d: a command name expected", i);
      return arg_error(L, "pipeline", 1, lua_tostring(L, -1));
    }
    if (!lua_checkstack(L, argc + 8)) {
      aigw_free(lens);
      aigw_buf_free(&b);
      return luaL_error(L, "aigw.redis.pipeline: command #%d has too many arguments", i);
    }
    for (int j = 1; j <= argc; j++) {
      lua_rawgeti(L, 3, j);
      int type = lua_type(L, -1);
      if (type != LUA_TSTRING && type != LUA_TNUMBER) { /* to_arg raises: free first */
        aigw_free(lens);
        aigw_buf_free(&b);
      }
      to_arg(L, 3 + j, "pipeline", j, i);
    }
    const char *no = refused(L, 4, argc);
    size_t cl;
    const char *cmd = lua_tolstring(L, 4, &cl);
    const char *why = SHARED;
    if (no == NULL && name_is(cmd, cl, "MULTI")) {
      if (in_multi) no = "a MULTI inside a MULTI", why = "Redis refuses it";
      in_multi = 1;
    } else if (no == NULL && (name_is(cmd, cl, "EXEC") || name_is(cmd, cl, "DISCARD"))) {
      in_multi = 0;
    }
    if (cl == 0) no = "an empty command name", why = "no such command";
    if (no) {
      aigw_free(lens);
      aigw_buf_free(&b);
      refuse(L, "aigw.redis.pipeline", no, why);
    }
    size_t before = b.len;
    if (append_command(L, &b, 4, argc) != 0) {
      aigw_free(lens);
      aigw_buf_free(&b);
      lua_pushnil(L);
      lua_pushstring(L, "no memory");
      return 2;
    }
    lens[i - 1] = b.len - before;
    lua_settop(L, 2);
  }
  if (in_multi) {
    aigw_free(lens);
    aigw_buf_free(&b);
    refuse(L, "aigw.redis.pipeline", "a MULTI without EXEC or DISCARD", SHARED);
  }
  int rc = send_and_wait(L, c, &b, lens, n, on_pipeline_done, "aigw.redis.pipeline");
  aigw_free(lens);
  return rc;
}

void aigw__lua_register_redis(lua_State *L) {
  if (luaL_newmetatable(L, CLIENT_MT)) {
    lua_pushcfunction(L, client_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, client_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, core_redis_client);
  lua_setfield(L, -2, "redis_client");
  lua_pushcfunction(L, core_redis_call);
  lua_setfield(L, -2, "redis_call");
  lua_pushcfunction(L, core_redis_pipeline);
  lua_setfield(L, -2, "redis_pipeline");
  lua_pushcfunction(L, core_redis_check_url);
  lua_setfield(L, -2, "redis_check_url");
}
