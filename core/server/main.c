/* main.c -- the aigw command line: run, check, reload, test, version, help. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/addr.h"
#include "base/log.h"
#include "lua/lua_vm.h"
#include "server/config_load.h"
#include "server/server.h"

static const char usage[] =
    "usage: aigw <command> [arguments]\n"
    "\n"
    "commands:\n"
    "  run [CONF]     run the gateway in the foreground (default conf/gateway.lua)\n"
    "  check CONF     validate the config and its plugins, then exit\n"
    "  reload [CONF]  make the running gateway reload its config and plugins\n"
    "  test [PATH...] run busted specs (default spec/) inside the runtime\n"
    "  version        print the version\n"
    "  help           print this text\n"
    "\n"
    "environment:\n"
    "  AIGW_PREFIX    where lua/ and plugins/ live (default: the source tree)\n";

int aigw_cmd_reload(const aigw_config_t *c);
int aigw_test_main(int argc, char **argv); /* test_cmd.c */

static const char *prefix(void) {
  const char *p = getenv("AIGW_PREFIX");
  return p && *p ? p : AIGW_DEFAULT_PREFIX;
}

static aigw_config_t *load(const char *path) {
  char err[2048];
  aigw_config_t *c = aigw_config_load(path, prefix(), err, sizeof err);
  if (c == NULL) fprintf(stderr, "aigw: %s\n", err);
  return c;
}

static int cmd_check(const char *path) {
  aigw_config_t *c = load(path);
  if (c == NULL) return 1;
  /* Plugins and providers load in a worker VM: build one to check them. */
  aigw_worker_t w;
  memset(&w, 0, sizeof w);
  w.loop.conf = c;
  /* A loop for what init_worker may set up (timers), closed unrun. */
  uv_loop_init(&w.loop.uv);
  char err[2048];
  int rc = aigw_lua_worker_init(&w.loop, err, sizeof err);
  aigw_lua_worker_close(&w.loop);
  uv_run(&w.loop.uv, UV_RUN_DEFAULT);
  uv_loop_close(&w.loop.uv);
  aigw__loop_free_lists(&w.loop);
  aigw_config_free(c);
  if (rc != 0) {
    fprintf(stderr, "aigw: %s\n", err);
    return 1;
  }
  printf("configuration ok\n");
  return 0;
}

static int is_public(const char *addr) {
  struct sockaddr_storage ss;
  return aigw_parse_listen(addr, &ss) == 0 && !aigw_sockaddr_is_loopback((struct sockaddr *)&ss);
}

/* An address that would be served to the network without any key: a
 * listen address without api_keys, or the admin address without admin_keys
 * (gateway keys do not open the admin endpoints, and without admin keys
 * they serve loopback peers only). Says which on stderr. */
static int refuse_public(const char *path, const aigw_config_t *c) {
  for (int i = 0; i < c->nlisten && !c->has_api_keys; i++) {
    if (is_public(c->listen[i])) {
      fprintf(stderr,
              "aigw: %s: refusing to listen on non-loopback address %s without api_keys "
              "(set AIGW_API_KEYS)\n",
              path, c->listen[i]);
      return 1;
    }
  }
  if (c->admin_listen && !c->has_admin_keys && is_public(c->admin_listen)) {
    fprintf(stderr,
            "aigw: %s: refusing to listen on non-loopback admin address %s without admin_keys "
            "(set AIGW_ADMIN_KEYS)\n",
            path, c->admin_listen);
    return 1;
  }
  return 0;
}

static int cmd_run(const char *path) {
  aigw_config_t *c = load(path);
  if (c == NULL) return 1;
  aigw_log_level = (aigw_log_level_t)c->log_level;
  aigw_log_format = (aigw_log_format_t)c->log_format;
  if (refuse_public(path, c)) {
    aigw_config_free(c);
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  int code = aigw_server_run(c);
  aigw_config_free(c);
  return code;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(usage, stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "run") == 0) {
    if (argc > 3) {
      fputs(usage, stderr);
      return 2;
    }
    return cmd_run(argc == 3 ? argv[2] : "conf/gateway.lua");
  }
  if (strcmp(cmd, "check") == 0) {
    if (argc != 3) {
      fprintf(stderr, "usage: aigw check CONF\n");
      return 2;
    }
    return cmd_check(argv[2]);
  }
  if (strcmp(cmd, "reload") == 0) {
    if (argc > 3) {
      fputs(usage, stderr);
      return 2;
    }
    aigw_config_t *c = load(argc == 3 ? argv[2] : "conf/gateway.lua");
    if (c == NULL) return 1;
    int rc = aigw_cmd_reload(c);
    aigw_config_free(c);
    return rc;
  }
  if (strcmp(cmd, "test") == 0) return aigw_test_main(argc - 2, argv + 2);
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0 || strcmp(cmd, "-v") == 0) {
    printf("aigw %s\n", AIGW_VERSION);
    return 0;
  }
  if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
    fputs(usage, stdout);
    return 0;
  }
  fprintf(stderr, "aigw: unknown command '%s'\n\n%s", cmd, usage);
  return 2;
}
