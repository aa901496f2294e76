/* worker.h -- a worker thread: one uv loop, one LuaJIT VM, its own listeners
 * (SO_REUSEPORT), its upstream pool and DNS cache. Nothing here is shared
 * with other workers except the config and the shared dicts. */
#ifndef AIGW_WORKER_H
#define AIGW_WORKER_H

#include <stdatomic.h>
#include <uv.h>

#include "loop/loop.h"

typedef struct aigw_server_s aigw_server_t;
typedef struct aigw_listener_s aigw_listener_t;

typedef struct aigw_worker_s {
  aigw_loop_t loop; /* what the layers below see of the worker */
  uv_thread_t thread;
  uv_async_t wakeup; /* stop requests from the main thread */
  uv_timer_t drain_timer;
  aigw_server_t *server;
  /* reload: commands from the main thread and the answers (server->mu) */
  unsigned long cmd_build;   /* build a generation for this reload number */
  unsigned long cmd_decided; /* the reload number decided */
  int cmd_commit;            /* its decision: 1 commit, 0 discard */
  unsigned long built;       /* the reload number last built */
  unsigned long applied;     /* the reload number whose decision is applied */
  int build_ok;
  char build_err[512];
  struct aigw_gen_s *pending; /* built, waiting for the decision */
  aigw_listener_t *listeners;
  int nlisteners;
  _Atomic int stop_asked;
} aigw_worker_t;

/* Sets the worker up on the calling thread (the main thread, before any
 * worker runs): its loop, first generation and listeners. The caller has
 * set server, loop.id, loop.conf, loop.host and loop.max_conns. Returns 0,
 * or -1 with the error in err and everything set up torn down again. */
int aigw__worker_setup(aigw_worker_t *w, char *err, size_t errlen);
/* Starts the worker thread; returns 0 or a negative code. */
int aigw_worker_start(aigw_worker_t *w);
/* Asks the worker to drain and stop (thread-safe). */
void aigw_worker_stop(aigw_worker_t *w);
void aigw_worker_join(aigw_worker_t *w);

/* reload.c, worker side: the main thread posted a command (on wakeup). */
void aigw__worker_reload_step(aigw_worker_t *w);

/* Frees everything parked on the loop's free lists (at its end). */
void aigw__loop_free_lists(aigw_loop_t *l);

/* Ends a loop that no worker thread runs (aigw test, the fuzz gateway), as
 * a worker stops: timers, Redis, the pool and the DNS cache; the loop runs
 * until their handles have closed; then the VM, the loop and its free
 * lists. Its connections and listeners must be closed first. Returns
 * uv_loop_close's result (non-zero: a handle was left open). */
int aigw__loop_close(aigw_loop_t *l);

#endif
