/* config.c -- reads the core's settings out of the validated Lua config.
 *
 * lua/aigw/config.lua does every check and fills every default; this file
 * only copies numbers and strings out of the normalised table. */
#include "config.h"

#include <arpa/inet.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <openssl/crypto.h>
#include <string.h>
#include <uv.h>

#include "alloc.h"
#include "errors.h"
#include "log.h"
#include "lua_vm.h"

static double num_field(lua_State *L, int idx, const char *k) {
  lua_getfield(L, idx, k);
  double v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

static char *str_field(lua_State *L, int idx, const char *k) {
  lua_getfield(L, idx, k);
  char *s = lua_isstring(L, -1) ? aigw_strdup(lua_tostring(L, -1)) : NULL;
  lua_pop(L, 1);
  return s;
}

aigw_config_t *aigw_config_load(const char *path, const char *prefix, char *err, size_t errlen) {
  lua_State *L = aigw_lua_new_state(prefix);
  if (L == NULL) {
    snprintf(err, errlen, "cannot create a Lua state");
    return NULL;
  }
  lua_getglobal(L, "require");
  lua_pushstring(L, "aigw.config");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_close(L);
    return NULL;
  }
  lua_getfield(L, -1, "load");
  lua_pushstring(L, path);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_close(L);
    return NULL;
  }
  int t = lua_gettop(L);
  aigw_config_t *c = aigw_calloc(1, sizeof *c);
  c->path = aigw_strdup(path);
  c->prefix = aigw_strdup(prefix);

  lua_getfield(L, t, "listen");
  c->nlisten = (int)lua_objlen(L, -1);
  c->listen = aigw_calloc((size_t)c->nlisten + 1, sizeof *c->listen);
  for (int i = 0; i < c->nlisten; i++) {
    lua_rawgeti(L, -1, i + 1);
    c->listen[i] = aigw_strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  c->admin_listen = str_field(L, t, "admin_listen");
  c->workers = (int)num_field(L, t, "workers");
  if (c->workers <= 0) c->workers = (int)uv_available_parallelism();
  char *level = str_field(L, t, "log_level");
  c->log_level = level ? aigw_log_level_parse(level) : AIGW_LOG_INFO;
  aigw_free(level);
  lua_getfield(L, t, "api_keys");
  c->has_api_keys = lua_objlen(L, -1) > 0;
  lua_pop(L, 1);
  lua_getfield(L, t, "admin_keys");
  c->has_admin_keys = lua_objlen(L, -1) > 0;
  if (c->has_admin_keys) {
    lua_rawgeti(L, -1, 1);
    c->first_admin_key = aigw_strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  c->pid_file = str_field(L, t, "pid_file");
  lua_getfield(L, t, "watch");
  c->watch = lua_toboolean(L, -1);
  lua_pop(L, 1);

  lua_getfield(L, t, "server");
  int s = lua_gettop(L);
  c->max_body_size = (size_t)num_field(L, s, "max_body_size");
  c->max_header_size = (size_t)num_field(L, s, "max_header_size");
  c->max_buffered_bodies = (size_t)num_field(L, s, "max_buffered_bodies");
  c->max_connections = (int)num_field(L, s, "max_connections");
  c->client_header_timeout_ms = (uint64_t)(num_field(L, s, "client_header_timeout") * 1000);
  c->client_body_timeout_ms = (uint64_t)(num_field(L, s, "client_body_timeout") * 1000);
  c->client_body_total_timeout_ms =
      (uint64_t)(num_field(L, s, "client_body_total_timeout") * 1000);
  c->keepalive_timeout_ms = (uint64_t)(num_field(L, s, "keepalive_timeout") * 1000);
  c->send_timeout_ms = (uint64_t)(num_field(L, s, "send_timeout") * 1000);
  c->drain_timeout_ms = (uint64_t)(num_field(L, s, "drain_timeout") * 1000);
  c->lua_time_limit_ms = (uint64_t)(num_field(L, s, "lua_time_limit") * 1000);
  c->lua_kill_after_ms = (uint64_t)(num_field(L, s, "lua_kill_after") * 1000);
  lua_pop(L, 1);

  lua_getfield(L, t, "shared");
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    c->zones = aigw_realloc(c->zones, (size_t)(c->nzones + 1) * sizeof *c->zones);
    c->zones[c->nzones].name = aigw_strdup(lua_tostring(L, -2));
    c->zones[c->nzones].size = (size_t)lua_tonumber(L, -1);
    c->nzones++;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_close(L);
  return c;
}

void aigw_config_free(aigw_config_t *c) {
  if (c == NULL) return;
  for (int i = 0; i < c->nlisten; i++) aigw_free(c->listen[i]);
  aigw_free(c->listen);
  for (int i = 0; i < c->nzones; i++) aigw_free(c->zones[i].name);
  aigw_free(c->zones);
  aigw_free(c->admin_listen);
  if (c->first_admin_key) {
    OPENSSL_cleanse(c->first_admin_key, strlen(c->first_admin_key));
    aigw_free(c->first_admin_key);
  }
  aigw_free(c->pid_file);
  aigw_free(c->path);
  aigw_free(c->prefix);
  aigw_free(c);
}

int aigw_parse_listen(const char *s, struct sockaddr_storage *out) {
  char host[256];
  const char *colon;
  if (s[0] == '[') {
    const char *end = strchr(s, ']');
    if (end == NULL || end[1] != ':') return AIGW_ECONFIG;
    size_t n = (size_t)(end - s - 1);
    if (n >= sizeof host) return AIGW_ECONFIG;
    memcpy(host, s + 1, n);
    host[n] = '\0';
    colon = end + 1;
  } else {
    colon = strrchr(s, ':');
    if (colon == NULL) return AIGW_ECONFIG;
    size_t n = (size_t)(colon - s);
    if (n >= sizeof host) return AIGW_ECONFIG;
    memcpy(host, s, n);
    host[n] = '\0';
  }
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || end == colon + 1 || port < 0 || port > 65535) return AIGW_ECONFIG;
  if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
  if (host[0] == '\0' || strcmp(host, "*") == 0) strcpy(host, "0.0.0.0");
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out) == 0) return 0;
  if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)out) == 0) return 0;
  return AIGW_ECONFIG;
}

int aigw_sockaddr_is_loopback(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    static const unsigned char lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const unsigned char v4[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(&in6->sin6_addr, lo, 16) == 0) return 1;
    if (memcmp(&in6->sin6_addr, v4, 12) == 0) return in6->sin6_addr.s6_addr[12] == 127;
  }
  return 0;
}
