/* fuzz_config.c -- config loading on fuzzed config files.
 *
 * A config is a Lua file, trusted code: what is fuzzed is its data. An
 * input is used only when it is data alone (data_only below: a table
 * constructor of strings, numbers, booleans and nil, keys named or
 * bracketed; no name that could be read, called or assigned as a global),
 * so no input can run code. Each is written to a scratch file and loaded
 *
 * 1. by aigw.config in the target's own VM (tests/fuzz/config.lua), whose
 *    Lua lines count as coverage (luacov.h): it must give a message, or a
 *    config with every field the core reads, of its type;
 * 2. by aigw_config_load (core/server/config_load.c), in a VM of its own as `aigw run`
 *    does: it must agree (NULL with a message exactly when 1 failed), and a
 *    config it returns must hold listen addresses aigw_parse_listen takes,
 *    a header size of at least 1k, at least one worker, zones of 4k or more.
 */
#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/addr.h"
#include "fuzz.h"
#include "lua/lua_vm.h"
#include "luacov.h"
#include "server/config_load.h"

#define FAIL(...)                     \
  do {                                \
    fprintf(stderr, "fuzz_config: "); \
    fprintf(stderr, __VA_ARGS__);     \
    fputc('\n', stderr);              \
    abort();                          \
  } while (0)

static lua_State *L;
static int check_ref = LUA_NOREF;
static const char *prefix;
static char path[256];

static int is_alpha(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int is_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* 1 when p[0, n) holds only literals, punctuation of table constructors,
 * `return`, and names used as keys inside a constructor (name '='). */
static int data_only(const char *p, size_t n) {
  int depth = 0;
  size_t i = 0;
  while (i < n) {
    unsigned char c = (unsigned char)p[i];
    if (is_space(c)) {
      i++;
    } else if (c == '"' || c == '\'') {
      size_t j = i + 1;
      while (j < n && (unsigned char)p[j] != c) j += p[j] == '\\' ? 2 : 1;
      i = j + 1;
    } else if (is_digit(c) || (c == '.' && i + 1 < n && is_digit((unsigned char)p[i + 1]))) {
      while (i < n &&
             (is_alpha((unsigned char)p[i]) || is_digit((unsigned char)p[i]) || p[i] == '.' ||
              ((p[i] == '+' || p[i] == '-') && strchr("eEpP", p[i - 1]) != NULL)))
        i++;
    } else if (is_alpha(c)) {
      size_t s = i;
      while (i < n && (is_alpha((unsigned char)p[i]) || is_digit((unsigned char)p[i]))) i++;
      size_t len = i - s;
      if ((len == 6 && memcmp(p + s, "return", 6) == 0) ||
          (len == 4 && memcmp(p + s, "true", 4) == 0) ||
          (len == 5 && memcmp(p + s, "false", 5) == 0) ||
          (len == 3 && memcmp(p + s, "nil", 3) == 0))
        continue;
      size_t j = i;
      while (j < n && is_space((unsigned char)p[j])) j++;
      if (depth <= 0 || j >= n || p[j] != '=' || (j + 1 < n && p[j + 1] == '=')) return 0;
    } else if (c == '-' && i + 1 < n && p[i + 1] == '-') {
      return 0; /* a comment: its text would not be checked */
    } else if (strchr("{}[]=,;-", c) != NULL && c != 0) {
      if (c == '{') depth++;
      if (c == '}') depth--;
      i++;
    } else {
      return 0;
    }
  }
  return 1;
}

static void teardown(void) {
  if (L) lua_close(L);
  L = NULL;
  unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  /* The VM's C buffers look leaked while it lives (LuaJIT's arena is not
   * scanned): leaks are checked at exit, once everything is closed. */
  fuzz_default_flag(argc, argv, "-detect_leaks=0");
  prefix = getenv("AIGW_PREFIX");
  if (prefix == NULL || *prefix == '\0') prefix = AIGW_DEFAULT_PREFIX;
  const char *tmp = getenv("TMPDIR");
  snprintf(path, sizeof path, "%s/aigw-fuzz-config-%ld.lua", tmp && *tmp ? tmp : "/tmp",
           (long)getpid());
  L = aigw_lua_new_state(prefix);
  if (L == NULL) FAIL("cannot create a Lua state");
  lua_getglobal(L, "dofile");
  lua_pushfstring(L, "%s/tests/fuzz/config.lua", prefix);
  if (lua_pcall(L, 1, 1, 0) != 0 || !lua_isfunction(L, -1))
    FAIL("tests/fuzz/config.lua: %s", lua_tostring(L, -1));
  check_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* The VM is closed before the leak check at exit. */
  atexit(teardown);
  luacov_install(L);
  return 0;
}

static void check_config(const aigw_config_t *c) {
  struct sockaddr_storage ss;
  if (c->nlisten < 1) FAIL("a config without a listen address");
  for (int i = 0; i < c->nlisten; i++) {
    if (c->listen[i] == NULL) FAIL("a listen address that is NULL");
    /* `aigw check` must never pass what `aigw run` cannot listen on
     * (listen_not_parsed in the corpus: "016.0.0.1", "999.1.1.1"). */
    if (aigw_parse_listen(c->listen[i], &ss) != 0)
      FAIL("listen address %s accepted, not parsed", c->listen[i]);
  }
  if (c->admin_listen && aigw_parse_listen(c->admin_listen, &ss) != 0)
    FAIL("admin_listen %s accepted, not parsed", c->admin_listen);
  if (c->workers < 1) FAIL("%d workers", c->workers);
  if (c->max_header_size < 1024) FAIL("max_header_size %zu", c->max_header_size);
  if (c->max_connections < 1) FAIL("max_connections %d", c->max_connections);
  for (int i = 0; i < c->nzones; i++)
    if (c->zones[i].name == NULL || c->zones[i].size < 4096)
      FAIL("shared zone %d of %zu bytes", i, c->zones[i].size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!data_only((const char *)data, size)) return -1; /* not kept in the corpus */
  FILE *f = fopen(path, "wb");
  if (f == NULL) FAIL("cannot write %s", path);
  if (size) fwrite(data, 1, size, f);
  fclose(f);

  lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
  lua_pushstring(L, path);
  if (lua_pcall(L, 1, 2, 0) != 0) FAIL("config.lua: %s", lua_tostring(L, -1));
  int ok = lua_toboolean(L, -2);
  const char *msg = lua_tostring(L, -1);
  if (ok && msg) FAIL("aigw.config accepted a config that is not whole: %s", msg);
  if (!ok && (msg == NULL || *msg == '\0')) FAIL("aigw.config failed without a message");

  char err[1024];
  err[0] = '\0';
  aigw_config_t *c = aigw_config_load(path, prefix, err, sizeof err);
  if (c == NULL && ok) FAIL("aigw_config_load refused what aigw.config took: %s", err);
  if (c != NULL && !ok) FAIL("aigw_config_load took what aigw.config refused: %s", msg);
  if (c == NULL && err[0] == '\0') FAIL("aigw_config_load failed without a message");
  if (c) check_config(c);
  aigw_config_free(c);
  lua_settop(L, 0);
  return 0;
}
