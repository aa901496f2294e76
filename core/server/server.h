/* server.h -- the process: workers, listeners, signals, graceful shutdown,
 * and reload coordination. */
#ifndef AIGW_SERVER_H
#define AIGW_SERVER_H

#include "base/config.h"
#include "lua/lua_vm.h"
#include "server/worker.h"

struct aigw_server_s {
  aigw_config_t *conf;
  aigw_worker_t *workers;
  int nworkers;
  uv_loop_t loop;
  uv_signal_t sigterm, sigint, sighup;
  uv_timer_t watchdog;
  uv_async_t reload_async; /* a reload was asked for, or a worker built */
  int stopping;
  /* reload state, under mu: tickets are handed to whoever asks; a reload
   * covers every ticket issued before it started. */
  uv_mutex_t mu;
  unsigned long reload_asked;  /* last ticket issued */
  unsigned long reload_covers; /* tickets covered by the reload running */
  unsigned long reload_done;   /* tickets answered */
  unsigned long reload_seq;    /* reload number (for the workers' commands) */
  unsigned long generation;    /* the generation serving (1 + reloads that took) */
  int reload_running;          /* 0, or building, or applying the decision */
  int reload_ok;
  char reload_msg[1024];
  struct aigw_watch_s *watch; /* optional file watching */
  aigw_lua_host_t lua_host;   /* what the workers' Lua sees of the process */
};

/* Runs until SIGTERM/SIGINT and the drain that follows. Returns the process
 * exit code (0 after a clean shutdown). */
int aigw_server_run(aigw_config_t *conf);

/* Fills h with the process's side of the Lua host (reload.c). */
void aigw__server_lua_host(aigw_server_t *srv, aigw_lua_host_t *h);

/* Asks for a reload (any thread). Returns the ticket to wait for. */
unsigned long aigw_server_reload(aigw_server_t *srv);

#endif
