/* lua_target.c -- aigw_core.target{...}: an upstream target as a Lua
 * userdata, made once per provider when a VM generation loads its config.
 *
 *   aigw_core.target{ url = "https://api.openai.com/v1", tls_verify = true,
 *                     ca_file = nil, headers = { authorization = "Bearer ..",
 *                     ["x-api-key"] = false },
 *                     connect_timeout = 5, read_timeout = 300, total_timeout = 600,
 *                     max_idle = 64, idle_timeout = 60 }
 *
 * `headers`: a string value is sent on every request (replacing the
 * client's header of that name); false removes the client's header. Bad
 * options raise an error naming the field. The userdata frees the target
 * when it is collected; exchanges in flight keep it referenced through
 * their coroutine. */
#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "lua/lua_vm.h"
#include "upstream/upstream.h"

static void target_free(aigw_target_t *t) {
  aigw_free(t->host);
  aigw_free(t->base_path);
  aigw_free(t->host_header);
  aigw_free(t->pool_key);
  aigw_free(t->set_headers);
  for (int i = 0; i < t->ndrop; i++) aigw_free(t->drop[i]);
  aigw_free(t->drop);
  aigw_free(t->drop_len);
  if (t->tls_ctx) aigw_tls_ctx_free(t->tls_ctx);
  aigw_free(t);
}

static int target_gc(lua_State *L) {
  aigw_target_t **tp = luaL_checkudata(L, 1, "aigw.target");
  if (*tp) target_free(*tp);
  *tp = NULL;
  return 0;
}

static int target_tostring(lua_State *L) {
  aigw_target_t **tp = luaL_checkudata(L, 1, "aigw.target");
  aigw_target_t *t = *tp;
  if (t == NULL) lua_pushstring(L, "aigw.target (freed)");
  else
    lua_pushfstring(L, "aigw.target(%s://%s:%d%s)", t->tls ? "https" : "http", t->host,
                    (int)t->port, t->base_path);
  return 1;
}

static uint64_t opt_ms(lua_State *L, const char *field, double dflt) {
  lua_getfield(L, 1, field);
  double v = dflt;
  if (!lua_isnil(L, -1)) {
    if (!lua_isnumber(L, -1) || lua_tonumber(L, -1) < 0)
      luaL_error(L, "target: %s: expected a number of seconds >= 0", field);
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return (uint64_t)(v * 1000.0 + 0.5);
}

static int valid_token(const char *s, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= 32 || c >= 127 || strchr("()<>@,;:\\\"/[]?={}", c)) return 0;
  }
  return 1;
}

static int valid_value(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\r' || c == '\n' || c == 0) return 0;
  }
  return 1;
}

/* Formats into a new string of exactly the length needed: what the pool
 * key and the Host line hold is never cut short. */
static char *format_new(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *format_new(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  char *out = aigw_malloc((size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(out, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return out;
}

/* The longest host name DNS, SNI and certificate checks can carry. */
#define HOST_MAX 255

/* Splits url into the target's scheme, host, port and base path. */
static const char *parse_url(aigw_target_t *t, const char *url) {
  const char *p;
  if (strncasecmp(url, "http://", 7) == 0) {
    p = url + 7;
    t->port = 80;
  } else if (strncasecmp(url, "https://", 8) == 0) {
    p = url + 8;
    t->port = 443;
    t->tls = 1;
  } else {
    return "url: expected http:// or https://";
  }
  const char *hs = p, *he;
  if (*p == '[') {
    he = strchr(p, ']');
    if (he == NULL) return "url: unterminated IPv6 address";
    hs = p + 1;
    p = he + 1;
  } else {
    while (*p && *p != ':' && *p != '/' && *p != '?' && *p != '#') p++;
    he = p;
  }
  if (he == hs) return "url: missing host";
  if (he - hs > HOST_MAX) return "url: host longer than 255 bytes";
  t->host = aigw_strndup(hs, (size_t)(he - hs));
  if (*p == ':') {
    char *end;
    long port = strtol(p + 1, &end, 10);
    if (end == p + 1 || port < 1 || port > 65535) return "url: bad port";
    t->port = (uint16_t)port;
    p = end;
  }
  if (*p && *p != '/') return "url: unexpected characters after the host";
  size_t plen = strlen(p);
  while (plen > 0 && p[plen - 1] == '/') plen--;
  t->base_path = aigw_strndup(p, plen);
  int default_port = t->port == (t->tls ? 443 : 80);
  int v6 = strchr(t->host, ':') != NULL;
  if (default_port)
    t->host_header = format_new("Host: %s%s%s\r\n", v6 ? "[" : "", t->host, v6 ? "]" : "");
  else
    t->host_header =
        format_new("Host: %s%s%s:%u\r\n", v6 ? "[" : "", t->host, v6 ? "]" : "", (unsigned)t->port);
  return NULL;
}

static int target_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  aigw_target_t **tp = lua_newuserdata(L, sizeof *tp);
  *tp = NULL;
  luaL_getmetatable(L, "aigw.target");
  lua_setmetatable(L, -2);
  int ud = lua_gettop(L);
  aigw_target_t *t = aigw_calloc(1, sizeof *t);
  *tp = t; /* from here on, an error frees it through __gc */

  lua_getfield(L, 1, "url");
  const char *url = lua_tostring(L, -1);
  if (url == NULL) return luaL_error(L, "target: url: expected a string");
  const char *perr = parse_url(t, url);
  if (perr) return luaL_error(L, "target: %s (%s)", perr, url);
  lua_pop(L, 1);

  t->connect_ms = opt_ms(L, "connect_timeout", 10);
  t->read_ms = opt_ms(L, "read_timeout", 300);
  t->total_ms = opt_ms(L, "total_timeout", 600);
  t->idle_ms = opt_ms(L, "idle_timeout", 60);
  lua_getfield(L, 1, "max_idle");
  t->max_idle = lua_isnil(L, -1) ? 64 : (int)lua_tointeger(L, -1);
  lua_pop(L, 1);

  lua_getfield(L, 1, "tls_verify");
  int verify = lua_isnil(L, -1) ? 1 : lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 1, "ca_file");
  const char *ca = lua_tostring(L, -1);
  if (t->tls) {
    char err[256];
    t->tls_ctx = aigw_tls_client_ctx_new(ca, verify, err, sizeof err);
    if (t->tls_ctx == NULL) return luaL_error(L, "target: tls: %s", err);
  }
  /* Connections are shared by targets with one key: it must hold all of
   * the scheme, address, CA and verify flag, or a verified target could be
   * handed a connection nobody verified. */
  t->pool_key = format_new("%s://%s:%u|%s|%d", t->tls ? "https" : "http", t->host,
                           (unsigned)t->port, t->tls && ca ? ca : "", t->tls ? verify : 0);
  lua_pop(L, 1);

  lua_getfield(L, 1, "headers");
  if (!lua_isnil(L, -1)) {
    if (!lua_istable(L, -1)) return luaL_error(L, "target: headers: expected a table");
    aigw_buf_t set = {0};
    int cap = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      size_t nl, vl = 0;
      const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &nl) : NULL;
      if (name == NULL || !valid_token(name, nl)) {
        aigw_buf_free(&set);
        return luaL_error(L, "target: headers: bad header name");
      }
      if (t->ndrop == cap) {
        cap = cap ? cap * 2 : 8;
        t->drop = aigw_realloc(t->drop, (size_t)cap * sizeof *t->drop);
        t->drop_len = aigw_realloc(t->drop_len, (size_t)cap * sizeof *t->drop_len);
      }
      t->drop_len[t->ndrop] = nl;
      char *lower = aigw_strndup(name, nl);
      for (size_t i = 0; i < nl; i++)
        if (lower[i] >= 'A' && lower[i] <= 'Z') lower[i] = (char)(lower[i] + 32);
      t->drop[t->ndrop++] = lower;
      if (lua_type(L, -1) == LUA_TSTRING) {
        const char *v = lua_tolstring(L, -1, &vl);
        if (!valid_value(v, vl)) {
          aigw_buf_free(&set);
          return luaL_error(L, "target: headers: bad value for %s", lower);
        }
        aigw_buf_append(&set, name, nl);
        aigw_buf_append(&set, ": ", 2);
        aigw_buf_append(&set, v, vl);
        aigw_buf_append(&set, "\r\n", 2);
      } else if (lua_type(L, -1) != LUA_TBOOLEAN || lua_toboolean(L, -1)) {
        aigw_buf_free(&set);
        return luaL_error(L, "target: headers: %s: expected a string or false", lower);
      }
      lua_pop(L, 1);
    }
    t->set_headers = set.data;
    t->set_headers_len = set.len;
  }
  lua_pop(L, 1);
  lua_settop(L, ud);
  return 1;
}

void aigw__lua_register_target(lua_State *L) {
  if (luaL_newmetatable(L, "aigw.target")) {
    lua_pushcfunction(L, target_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, target_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushstring(L, "aigw.target");
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, target_new);
  lua_setfield(L, -2, "target");
}
