/* config_load.c -- reads the core's settings out of the validated Lua
 * config.
 *
 * lua/aigw/engine/config.lua does every check and fills every default, in a VM of
 * its own; this file only copies numbers and strings out of the normalised
 * table into the plain aigw_config_t (config.h). */
#include "server/config_load.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "lua/lua_vm.h"

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
  char *format = str_field(L, t, "log_format");
  c->log_format = format ? aigw_log_format_parse(format) : AIGW_LOG_TEXT;
  if (c->log_format < 0) c->log_format = AIGW_LOG_TEXT;
  aigw_free(format);
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
  c->client_body_total_timeout_ms = (uint64_t)(num_field(L, s, "client_body_total_timeout") * 1000);
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
