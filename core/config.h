/* config.h -- what the C core reads from the Lua config.
 *
 * The config file is Lua; lua/aigw/config.lua validates and normalises it
 * (sizes, durations, defaults) in a throw-away VM on the main thread, and
 * aigw_config_load() copies out the fields the core itself needs. Plugins,
 * providers and routes stay on the Lua side: each worker VM loads the same
 * file again through the same validator. */
#ifndef AIGW_CONFIG_H
#define AIGW_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct {
  char *name;
  size_t size;
} aigw_zone_conf_t;

typedef struct {
  char *path;            /* the config file, as given */
  char *prefix;          /* where lua/ and plugins/ live */
  char **listen;         /* "host:port" */
  int nlisten;
  char *admin_listen;    /* NULL: no admin listener */
  int workers;
  int log_level;
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
  uint64_t lua_time_limit_ms;   /* 0: no limit */
  uint64_t lua_kill_after_ms;   /* 0: never abort */
  aigw_zone_conf_t *zones;
  int nzones;
} aigw_config_t;

/* Loads and validates path. On failure returns NULL and writes one line
 * ("file:line: what is wrong") into err. */
aigw_config_t *aigw_config_load(const char *path, const char *prefix, char *err, size_t errlen);
void aigw_config_free(aigw_config_t *c);

/* Splits "host:port" / "[v6]:port" into a sockaddr. Returns 0 or a negative code. */
int aigw_parse_listen(const char *s, struct sockaddr_storage *out);
/* 1 when the address is loopback (127/8 or ::1). */
int aigw_sockaddr_is_loopback(const struct sockaddr *sa);

#endif
