/* watchdog.h -- a bound on Lua that never returns to the loop.
 *
 * Every entry into a VM is bracketed by aigw_lua_enter/leave, which stamp
 * the worker with the time Lua was entered (two relaxed stores). The main
 * thread looks at the stamps a few times per lua_time_limit; a worker past
 * the limit gets a signal whose handler, on the worker thread, installs a
 * count hook in the running VM (as LuaJIT's own command line does on
 * Ctrl-C). The hook raises an error at the next interpreted instruction, so
 * the request (or timer, or reload) fails and the worker goes on. Plugin
 * files are loaded with the JIT off for their functions, so their loops are
 * interpreted and the hook reaches them; a loop in compiled code never sees
 * a hook, so past lua_kill_after the process aborts instead of serving with
 * a wedged worker. */
#ifndef AIGW_WATCHDOG_H
#define AIGW_WATCHDOG_H

#include <lua.h>
#include <signal.h>
#include <stdatomic.h>
#include <uv.h>

#include "loop/loop.h"

typedef struct {
  lua_State *volatile L;       /* the VM being run, while depth > 0 */
  volatile sig_atomic_t depth; /* nested entries */
  volatile sig_atomic_t hooked;
} aigw_lua_run_t;

extern _Thread_local aigw_lua_run_t aigw__lua_run;

static inline void aigw_lua_enter(aigw_loop_t *loop, lua_State *L) {
  if (aigw__lua_run.depth == 0) {
    aigw__lua_run.L = L;
    if (loop) atomic_store_explicit(&loop->lua_since, uv_now(&loop->uv) + 1, memory_order_relaxed);
  }
  atomic_signal_fence(memory_order_seq_cst);
  aigw__lua_run.depth++;
}

void aigw__lua_unhook(lua_State *L);

static inline void aigw_lua_leave(aigw_loop_t *loop) {
  if (--aigw__lua_run.depth > 0) return;
  atomic_signal_fence(memory_order_seq_cst);
  if (loop) atomic_store_explicit(&loop->lua_since, 0, memory_order_relaxed);
  if (aigw__lua_run.hooked) aigw__lua_unhook(aigw__lua_run.L);
}

/* Installs the signal handler (once per process). */
void aigw_watchdog_install(void);
/* Checks the loop of one worker (its thread); called from the main
 * thread's timer. */
void aigw_watchdog_check(aigw_loop_t *loop, uv_thread_t thread, uint64_t limit_ms,
                         uint64_t kill_ms);

#endif
