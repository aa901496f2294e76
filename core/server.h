/* server.h -- the process: workers, listeners, signals, graceful shutdown. */
#ifndef AIGW_SERVER_H
#define AIGW_SERVER_H

#include "config.h"
#include "worker.h"

struct aigw_server_s {
  aigw_config_t *conf;
  aigw_worker_t *workers;
  int nworkers;
  uv_loop_t loop;
  uv_signal_t sigterm, sigint, sighup;
  int stopping;
};

/* Runs until SIGTERM/SIGINT and the drain that follows. Returns the process
 * exit code (0 after a clean shutdown). */
int aigw_server_run(aigw_config_t *conf);

/* Opens a listening socket with SO_REUSEPORT on the worker's loop. */
int aigw__listener_open(aigw_worker_t *w, aigw_listener_t *l, const char *addr, int admin);

#endif
