/* config.h -- what the C core reads from the Lua config.
 *
 * The config file is Lua; lua/aigw/engine/config.lua validates and normalises it
 * (sizes, durations, defaults) in a throw-away VM on the main thread, and
 * aigw_config_load() (config_load.c) copies out the fields the core itself
 * needs into this plain struct. Plugins, providers and routes stay on the
 * Lua side: each worker VM loads the same file again through the same
 * validator. */
#ifndef AIGW_CONFIG_H
#define AIGW_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  char *name;
  size_t size;
} aigw_zone_conf_t;

typedef struct {
  char *path;    /* the config file, as given */
  char *prefix;  /* where lua/ and plugins/ live */
  char **listen; /* "host:port" */
  int nlisten;
  char *admin_listen; /* NULL: no admin listener */
  int workers;
  int log_level;
  int log_format; /* aigw_log_format_t */
  int has_api_keys;
  int has_admin_keys;
  char *first_admin_key; /* for `aigw reload` to call the admin listener */
  char *pid_file;        /* NULL: none */
  int watch;             /* reload when conf/ or plugins/ change */
  size_t max_body_size;
  size_t max_header_size;
  size_t max_buffered_bodies;
  int max_connections;
  uint64_t client_header_timeout_ms;
  uint64_t client_body_timeout_ms;
  uint64_t client_body_total_timeout_ms;
  uint64_t keepalive_timeout_ms;
  uint64_t send_timeout_ms;
  uint64_t drain_timeout_ms;
  uint64_t lua_time_limit_ms; /* 0: no limit */
  uint64_t lua_kill_after_ms; /* 0: never abort */
  aigw_zone_conf_t *zones;
  int nzones;
} aigw_config_t;

/* Frees what aigw_config_load (config_load.h) made. */
void aigw_config_free(aigw_config_t *c);

#endif
