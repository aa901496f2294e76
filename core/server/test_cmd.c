/* test_cmd.c -- `aigw test [--config FILE] [busted options] [PATH...]`:
 * busted specs run inside this process's own LuaJIT, with the real aigw
 * API.
 *
 * The set-up is a worker's: a uv loop, a DNS cache, an upstream pool, the
 * shared dicts the config declares, and a bare VM generation
 * (aigw_gen_new_bare: cjson preloaded, aigw_core, package.path on
 * <prefix>/lua and <prefix>/plugins), with the system's Lua paths added for
 * busted and its C modules, and "aigw.test.core" (lua_test.c) for the spec
 * helpers.
 *
 * Busted's whole run (lua/aigw/test/runner.lua) is one lthread on the loop,
 * and the loop runs until it finishes. Busted 2 runs every spec body with
 * plain (x)pcall, which LuaJIT can yield across, and makes no coroutine of
 * its own: a spec body runs on the lthread's own coroutine, so aigw.sleep,
 * aigw.http and aigw.redis called from a spec wait on the loop as they do
 * in a request. (A coroutine a spec makes itself cannot wait, as in a
 * plugin.) The exit status is busted's: 0 when every spec passed. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/shdict.h"
#include "loop/redis.h"
#include "lua/lthread.h"
#include "lua/lua_vm.h"
#include "server/config_load.h"
#include "server/server.h"
#include "upstream/upstream.h"

void aigw__test_core_preload(lua_State *L);
void aigw__test_kill_children(void);

static const char test_usage[] =
    "usage: aigw test [--config FILE] [busted options] [PATH...]\n"
    "\n"
    "Runs busted specs (default: spec/) inside aigw's LuaJIT with the real aigw API.\n"
    "  --config FILE   the config whose shared dicts the specs get\n"
    "                  (default: conf/gateway.lua under the prefix)\n"
    "Any other option is busted's (aigw test --help lists them), e.g.\n"
    "  --filter=PATTERN, -o TAP, --list, -v.\n";

static const char *test_prefix(void) {
  const char *p = getenv("AIGW_PREFIX");
  return p && *p ? p : AIGW_DEFAULT_PREFIX;
}

static int create_zones(const aigw_config_t *c) {
  for (int i = 0; i < c->nzones; i++) {
    if (aigw_shdict_lookup(c->zones[i].name)) continue;
    const char *e = NULL;
    if (aigw_shdict_new(c->zones[i].name, c->zones[i].size, &e) == NULL) {
      fprintf(stderr, "aigw: shared zone %s: %s\n", c->zones[i].name, e ? e : "cannot create");
      return -1;
    }
  }
  return 0;
}

/* package.path and cpath as LuaJIT sets them (its defaults, or LUA_PATH and
 * LUA_CPATH), appended to ours: busted, penlight, luassert and their C
 * modules (lua-term, lua-system) are found where Debian installs them. */
static void add_system_paths(lua_State *L) {
  lua_State *d = luaL_newstate();
  if (d == NULL) return;
  luaL_openlibs(d);
  lua_getglobal(d, "package");
  lua_getfield(d, -1, "path");
  lua_getfield(d, -2, "cpath");
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s;%s", lua_tostring(L, -1), lua_tostring(d, -2));
  lua_setfield(L, -3, "path");
  lua_pop(L, 1);
  lua_pushstring(L, lua_tostring(d, -1));
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
  lua_close(d);
}

typedef struct {
  aigw_loop_t loop;
  aigw_lua_host_t host; /* one worker; no reload, no status */
  int live;             /* the loop is set up */
  aigw_config_t *conf;
} test_env_t;

static int env_setup(test_env_t *e, const char *conf_path) {
  char err[2048];
  e->conf = aigw_config_load(conf_path, test_prefix(), err, sizeof err);
  if (e->conf == NULL) {
    fprintf(stderr, "aigw: %s\n", err);
    return -1;
  }
  aigw_log_level = (aigw_log_level_t)e->conf->log_level;
  aigw_log_format = (aigw_log_format_t)e->conf->log_format;
  aigw_log_set_thread_id(1); /* log lines say [w1], as from a worker */
  if (create_zones(e->conf) != 0) return -1;
  aigw_loop_t *w = &e->loop;
  e->host.nworkers = 1;
  w->id = 1;
  w->host = &e->host;
  w->conf = e->conf;
  w->max_conns = e->conf->max_connections;
  uv_loop_init(&w->uv);
  e->live = 1;
  w->dns = aigw_dns_new(&w->uv, 30.0);
  w->pool = aigw_pool_new(w);
  /* A bare generation: the aigw API, no config, no plugins. */
  w->gen = aigw_gen_new_bare(w, err, sizeof err);
  if (w->gen == NULL) {
    fprintf(stderr, "aigw: %s\n", err);
    return -1;
  }
  w->gen->id = 1;
  lua_State *L = w->gen->L;
  lua_getglobal(L, "aigw_core");
  lua_pushstring(L, e->conf->path);
  lua_setfield(L, -2, "config_path");
  lua_pop(L, 1);
  add_system_paths(L);
  aigw__test_core_preload(L);
  return 0;
}

static void env_teardown(test_env_t *e) {
  aigw_loop_t *w = &e->loop;
  aigw__test_kill_children();
  if (e->live) {
    if (aigw__loop_close(w) != 0) aigw_log_warn("aigw test: loop closed with handles open");
    e->live = 0;
  }
  aigw_shdict_thread_cleanup();
  aigw_shdict_free_all();
  if (e->conf) aigw_config_free(e->conf);
  e->conf = NULL;
}

/* The run's thread has stopped: its status and busted's exit code. */
typedef struct {
  int finished;
  int code;
} run_state_t;

static void run_done(aigw_lthread_t *t, int status) {
  run_state_t *st = t->owner;
  lua_State *co = t->co;
  st->finished = 1;
  if (status == 0) {
    st->code = lua_isnumber(co, -1) ? (int)lua_tointeger(co, -1) : 1;
  } else if (status == LUA_YIELD) {
    fprintf(stderr,
            "aigw test: the run yielded outside the aigw API (coroutine.yield, or "
            "aigw.exit outside h.run)\n");
    st->code = 1;
  } else {
    const char *msg = lua_tostring(co, -1);
    fprintf(stderr, "aigw test: %s\n", msg ? msg : "(error object is not a string)");
    st->code = 1;
  }
  aigw_lthread_free(t);
}

/* Runs busted in an lthread on the loop: runner.run(args) returns the exit
 * status. Specs may wait (aigw.sleep, HTTP, Redis): the loop runs until the
 * thread has finished. */
static int run_busted(test_env_t *e, int argc, char **argv) {
  aigw_loop_t *w = &e->loop;
  lua_State *L = w->gen->L;
  lua_getglobal(L, "require");
  lua_pushstring(L, "aigw.test.runner");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    fprintf(stderr, "aigw test: %s\n", lua_tostring(L, -1));
    lua_settop(L, 0);
    return 1;
  }
  lua_getfield(L, -1, "run");
  lua_remove(L, -2);
  run_state_t st = {0, 1};
  aigw_lthread_t *t = aigw_lthread_new(w->gen, &st, run_done);
  if (t == NULL) {
    fprintf(stderr, "aigw test: no memory\n");
    return 1;
  }
  lua_createtable(t->co, argc, 0);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(t->co, argv[i]);
    lua_rawseti(t->co, -2, i + 1);
  }
  aigw_lthread_start(t, 1);
  while (!st.finished) {
    if (uv_run(&w->uv, UV_RUN_ONCE) == 0 && !st.finished) {
      /* Nothing on the loop can ever resume it. */
      fprintf(stderr, "aigw test: the run is waiting on an operation that can never complete\n");
      aigw_lthread_free(t);
      return 1;
    }
  }
  return st.code;
}

int aigw_test_main(int argc, char **argv) {
  /* Our own option (--config) is taken out; the rest is busted's. */
  char default_conf[4096];
  snprintf(default_conf, sizeof default_conf, "%s/conf/gateway.lua", test_prefix());
  const char *conf_path = default_conf;
  char **args = aigw_calloc((size_t)argc + 1, sizeof *args);
  int nargs = 0;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--config") == 0) {
      if (i + 1 >= argc) {
        fputs(test_usage, stderr);
        aigw_free(args);
        return 2;
      }
      conf_path = argv[++i];
    } else if (strncmp(argv[i], "--config=", 9) == 0) {
      conf_path = argv[i] + 9;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(test_usage, stdout);
      fputs("\nbusted's options, as `aigw test` takes them:\n", stdout);
      args[nargs++] = argv[i];
    } else {
      args[nargs++] = argv[i];
    }
  }
  test_env_t e;
  memset(&e, 0, sizeof e);
  int code = 1;
  if (env_setup(&e, conf_path) == 0) code = run_busted(&e, nargs, args);
  env_teardown(&e);
  aigw_free(args);
  return code;
}
