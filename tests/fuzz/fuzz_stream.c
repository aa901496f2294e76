/* fuzz_stream.c -- the SSE parser and the stream translators on any bytes.
 *
 * The runtime's own Lua state (aigw_lua_new_state: cjson, aigw_core, the
 * package path on <prefix>/lua and <prefix>/plugins) runs the driver
 * tests/fuzz/stream.lua, which reads the input as a case (the SSE parser,
 * or one upstream -> client direction of aigw.reply), flags (how the
 * stream ends, what head it has) and an upstream body in cuts, and checks
 * what the client would get. Any Lua error out of the driver is a finding:
 * a translator that raised, or output not valid for its format. The prefix
 * is $AIGW_PREFIX, else the source tree. The Lua lines run are coverage
 * too (luacov.h). */
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "lua/lua_vm.h"
#include "luacov.h"

static lua_State *L;
static int run_ref = LUA_NOREF;
static unsigned long runs;

/* LuaJIT keeps its objects in its own arena, which LeakSanitizer does not
 * scan: the C buffers its userdata point to (cjson's) would look leaked
 * while the VM lives. So leaks are checked once, at exit, after it is
 * closed (stream.options turns libFuzzer's check per input off). */
static void teardown(void) {
  if (L) lua_close(L);
  L = NULL;
}

static int traceback(lua_State *S) {
  luaL_traceback(S, S, lua_tostring(S, 1), 1);
  return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  /* The VM's C buffers look leaked while it lives (LuaJIT's arena is not
   * scanned): leaks are checked at exit, once everything is closed. */
  fuzz_default_flag(argc, argv, "-detect_leaks=0");
  const char *prefix = getenv("AIGW_PREFIX");
  if (prefix == NULL || *prefix == '\0') prefix = AIGW_DEFAULT_PREFIX;
  L = aigw_lua_new_state(prefix);
  if (L == NULL) {
    fprintf(stderr, "fuzz_stream: cannot create a Lua state\n");
    exit(1);
  }
  lua_pushcfunction(L, traceback);
  lua_pushfstring(L, "%s/tests/fuzz/stream.lua", prefix);
  lua_getglobal(L, "dofile");
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 1) != 0 || !lua_isfunction(L, -1)) {
    fprintf(stderr, "fuzz_stream: tests/fuzz/stream.lua: %s\n", lua_tostring(L, -1));
    exit(1);
  }
  run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, 0);
  atexit(teardown);
  luacov_install(L);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_pushcfunction(L, traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, run_ref);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 1) != 0) {
    const char *msg = lua_tostring(L, -1);
    /* A finding already reported (stream.lua's KNOWN): not a new one. */
    if (msg == NULL || strncmp(msg, "known: ", 7) != 0) {
      fprintf(stderr, "fuzz_stream: %s\n", msg ? msg : "(error object is not a string)");
      abort();
    }
  }
  lua_settop(L, 0);
  /* Garbage of one input is not left for the next to pay for. */
  if (++runs % 64 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
