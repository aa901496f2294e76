/* luacov.h -- Lua line coverage as libFuzzer feedback.
 *
 * The C code is instrumented by the compiler; the Lua code the targets run
 * is not. A line hook counts each pair (previous line, this line) of the
 * Lua code run into a table in the __libfuzzer_extra_counters section,
 * which libFuzzer reads as coverage beside its own counters. So an input
 * that takes a new path through a translator is kept in the corpus.
 *
 * Only for a state the target owns: LuaJIT's hook is one per VM, and the
 * core's own hooks (the watchdog, aigw.exit in header_filter) would replace
 * it in a worker's VM. A hooked VM runs interpreted. */
#ifndef AIGW_FUZZ_LUACOV_H
#define AIGW_FUZZ_LUACOV_H

#include <lua.h>
#include <stdint.h>

#define LUACOV_SIZE (1 << 16)

__attribute__((section("__libfuzzer_extra_counters"),
               used)) static uint8_t luacov_counters[LUACOV_SIZE];
static uintptr_t luacov_prev;

static void luacov_hook(lua_State *L, lua_Debug *ar) {
  if (!lua_getinfo(L, "Sl", ar)) return;
  /* A chunk's source string stays interned while its code is loaded. */
  uintptr_t here =
      ((uintptr_t)ar->source >> 4) * 0x9E3779B1u ^ (uintptr_t)ar->currentline * 0x85EBCA77u;
  uint8_t *c = &luacov_counters[(here ^ (luacov_prev >> 1)) & (LUACOV_SIZE - 1)];
  if (*c < 255) (*c)++;
  luacov_prev = here;
}

static inline void luacov_install(lua_State *L) { lua_sethook(L, luacov_hook, LUA_MASKLINE, 0); }

#endif
