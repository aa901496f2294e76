/* watchdog.c -- stopping Lua that runs away (see watchdog.h). */
#include "lua/watchdog.h"

#include <lauxlib.h>
#include <pthread.h>
#include <stdlib.h>

#include "base/log.h"

_Thread_local aigw_lua_run_t aigw__lua_run;

static int watch_signal(void) { return SIGRTMIN + 3; }

static void runaway_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  /* The hook stays until Lua returns to C (aigw_lua_leave), so a plugin's
   * own pcall cannot swallow the error and loop on: the next instruction
   * outside it fails again. */
  luaL_error(L, "Lua code ran past server.lua_time_limit without returning; stopped");
}

static void on_watch_signal(int sig) {
  (void)sig;
  if (aigw__lua_run.depth > 0 && aigw__lua_run.L != NULL && !aigw__lua_run.hooked) {
    aigw__lua_run.hooked = 1;
    lua_sethook(aigw__lua_run.L, runaway_hook, LUA_MASKCOUNT, 1);
  }
}

void aigw__lua_unhook(lua_State *L) {
  aigw__lua_run.hooked = 0;
  if (L) lua_sethook(L, NULL, 0, 0);
}

void aigw_watchdog_install(void) {
  static int installed;
  if (installed) return;
  installed = 1;
  struct sigaction sa;
  sa.sa_handler = on_watch_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(watch_signal(), &sa, NULL);
}

void aigw_watchdog_check(aigw_loop_t *loop, uv_thread_t thread, uint64_t limit_ms,
                         uint64_t kill_ms) {
  uint64_t now = uv_hrtime() / 1000000;
  uint64_t since = atomic_load_explicit(&loop->lua_since, memory_order_relaxed);
  if (since == 0 || now < since) return;
  uint64_t ran = now - since;
  if (kill_ms && ran >= kill_ms) {
    aigw_log_error(
        "worker %d: Lua has not returned for %llu ms (compiled code cannot be "
        "interrupted); aborting the process",
        loop->id, (unsigned long long)ran);
    aigw_log_flush();
    abort();
  }
  if (limit_ms && ran >= limit_ms && loop->watch_signalled != since) {
    loop->watch_signalled = since;
    aigw_log_warn("worker %d: Lua has run for %llu ms without returning; interrupting it", loop->id,
                  (unsigned long long)ran);
    pthread_kill(thread, watch_signal());
  }
}
