/* server.c -- the process: it sets up the workers, hands each its thread,
 * and waits on signals in the main thread's own loop. SIGTERM and SIGINT
 * drain and stop; SIGHUP reloads (reload.c). The main loop also runs the
 * Lua watchdog (watchdog.h). */
#include "server/server.h"

#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/shdict.h"
#include "lua/watchdog.h"

void aigw__server_reload_step(aigw_server_t *srv);

/* Optional file watching: changes under conf/ or plugins/ reload. */
struct aigw_watch_s {
  uv_fs_event_t conf_dir, plugins_dir;
  uv_timer_t settle;
};

static void on_stop_signal(uv_signal_t *s, int signum) {
  aigw_server_t *srv = s->data;
  if (srv->stopping) {
    aigw_log_info("second %s: still draining", signum == SIGINT ? "SIGINT" : "SIGTERM");
    return;
  }
  srv->stopping = 1;
  aigw_log_info("%s: draining (up to %.1f s)", signum == SIGINT ? "SIGINT" : "SIGTERM",
                (double)srv->conf->drain_timeout_ms / 1000.0);
  for (int i = 0; i < srv->nworkers; i++) aigw_worker_stop(&srv->workers[i]);
  /* The handlers stay installed (a second signal must not kill a draining
   * process) but no longer keep the main loop alive: it returns, and the
   * main thread waits for the workers. */
  uv_unref((uv_handle_t *)&srv->sigterm);
  uv_unref((uv_handle_t *)&srv->sigint);
  uv_unref((uv_handle_t *)&srv->sighup);
  uv_unref((uv_handle_t *)&srv->reload_async);
  uv_unref((uv_handle_t *)&srv->watchdog);
  if (srv->watch) {
    uv_unref((uv_handle_t *)&srv->watch->conf_dir);
    uv_unref((uv_handle_t *)&srv->watch->plugins_dir);
    uv_timer_stop(&srv->watch->settle);
    uv_unref((uv_handle_t *)&srv->watch->settle);
  }
  /* Callers waiting on a reload get their answer now. */
  aigw__server_reload_step(srv);
}

static void on_hup(uv_signal_t *s, int signum) {
  (void)signum;
  aigw_server_t *srv = s->data;
  aigw_log_info("SIGHUP: reloading");
  aigw_server_reload(srv);
}

static void on_reload_async(uv_async_t *a) { aigw__server_reload_step(a->data); }

static void on_watchdog(uv_timer_t *t) {
  aigw_server_t *srv = t->data;
  for (int i = 0; i < srv->nworkers; i++)
    aigw_watchdog_check(&srv->workers[i].loop, srv->workers[i].thread, srv->conf->lua_time_limit_ms,
                        srv->conf->lua_kill_after_ms);
}

/* --- file watching --- */

static void on_settled(uv_timer_t *t) {
  aigw_server_t *srv = t->data;
  aigw_log_info("files changed: reloading");
  aigw_server_reload(srv);
}

static void on_fs_event(uv_fs_event_t *h, const char *name, int events, int status) {
  (void)events;
  aigw_server_t *srv = h->data;
  if (status < 0 || srv->stopping) return;
  /* Only Lua files matter (a log file may well share the config's
   * directory). Editors write a file in several steps: reload a moment
   * after the first change, once, for the whole burst. */
  size_t n = name ? strlen(name) : 0;
  if (n < 5 || name[0] == '.' || strcmp(name + n - 4, ".lua") != 0) return;
  if (!uv_is_active((uv_handle_t *)&srv->watch->settle))
    uv_timer_start(&srv->watch->settle, on_settled, 300, 0);
}

static void watch_start(aigw_server_t *srv) {
  struct aigw_watch_s *wt = aigw_calloc(1, sizeof *wt);
  srv->watch = wt;
  uv_timer_init(&srv->loop, &wt->settle);
  wt->settle.data = srv;
  char conf_dir[4096], plugins_dir[4096];
  snprintf(conf_dir, sizeof conf_dir, "%s", srv->conf->path);
  snprintf(plugins_dir, sizeof plugins_dir, "%s/plugins", srv->conf->prefix);
  const char *dirs[2] = {dirname(conf_dir), plugins_dir};
  uv_fs_event_t *hs[2] = {&wt->conf_dir, &wt->plugins_dir};
  for (int i = 0; i < 2; i++) {
    uv_fs_event_init(&srv->loop, hs[i]);
    hs[i]->data = srv;
    int rc = uv_fs_event_start(hs[i], on_fs_event, dirs[i], 0);
    if (rc < 0) aigw_log_warn("watch %s: %s", dirs[i], uv_strerror(rc));
    else aigw_log_info("watching %s for changes", dirs[i]);
  }
}

static void watch_stop(aigw_server_t *srv) {
  if (srv->watch == NULL) return;
  uv_close((uv_handle_t *)&srv->watch->conf_dir, NULL);
  uv_close((uv_handle_t *)&srv->watch->plugins_dir, NULL);
  uv_close((uv_handle_t *)&srv->watch->settle, NULL);
}

static void pid_file_write(const aigw_config_t *c) {
  if (c->pid_file == NULL) return;
  FILE *f = fopen(c->pid_file, "w");
  if (f == NULL) {
    aigw_log_warn("pid_file %s: cannot write it", c->pid_file);
    return;
  }
  fprintf(f, "%ld\n", (long)getpid());
  fclose(f);
}

static int create_zones(const aigw_config_t *c, char *err, size_t errlen) {
  for (int i = 0; i < c->nzones; i++) {
    if (aigw_shdict_lookup(c->zones[i].name)) continue;
    const char *e = NULL;
    if (aigw_shdict_new(c->zones[i].name, c->zones[i].size, &e) == NULL) {
      snprintf(err, errlen, "shared zone %s: %s", c->zones[i].name, e ? e : "cannot create");
      return -1;
    }
  }
  return 0;
}

int aigw_server_run(aigw_config_t *conf) {
  aigw_server_t srv;
  memset(&srv, 0, sizeof srv);
  srv.conf = conf;
  srv.nworkers = conf->workers;
  srv.generation = 1;
  uv_mutex_init(&srv.mu);
  char err[1024];
  if (create_zones(conf, err, sizeof err) != 0) {
    fprintf(stderr, "aigw: %s\n", err);
    aigw_shdict_free_all();
    return 1;
  }
  srv.workers = aigw_calloc((size_t)srv.nworkers, sizeof *srv.workers);
  aigw__server_lua_host(&srv, &srv.lua_host);
  int ok = 1;
  int started = 0;
  for (int i = 0; i < srv.nworkers && ok; i++) {
    aigw_worker_t *w = &srv.workers[i];
    w->loop.id = i + 1;
    w->server = &srv;
    w->loop.conf = conf;
    w->loop.host = &srv.lua_host;
    w->loop.max_conns = conf->max_connections / srv.nworkers;
    if (w->loop.max_conns < 1) w->loop.max_conns = 1;
    if (aigw__worker_setup(w, err, sizeof err) != 0) {
      fprintf(stderr, "aigw: %s\n", err);
      ok = 0;
      break;
    }
    started++;
  }
  int code = 0;
  if (!ok) {
    /* Workers already set up never ran: start them just to stop them. */
    code = 1;
    for (int i = 0; i < started; i++) {
      aigw_worker_start(&srv.workers[i]);
      aigw_worker_stop(&srv.workers[i]);
    }
    for (int i = 0; i < started; i++) aigw_worker_join(&srv.workers[i]);
    aigw_free(srv.workers);
    aigw_shdict_free_all();
    uv_mutex_destroy(&srv.mu);
    return code;
  }

  uv_loop_init(&srv.loop);
  uv_signal_init(&srv.loop, &srv.sigterm);
  uv_signal_init(&srv.loop, &srv.sigint);
  uv_signal_init(&srv.loop, &srv.sighup);
  srv.sigterm.data = srv.sigint.data = srv.sighup.data = &srv;
  uv_signal_start(&srv.sigterm, on_stop_signal, SIGTERM);
  uv_signal_start(&srv.sigint, on_stop_signal, SIGINT);
  uv_signal_start(&srv.sighup, on_hup, SIGHUP);
  uv_async_init(&srv.loop, &srv.reload_async, on_reload_async);
  srv.reload_async.data = &srv;
  uv_timer_init(&srv.loop, &srv.watchdog);
  srv.watchdog.data = &srv;
  uint64_t limit = conf->lua_time_limit_ms ? conf->lua_time_limit_ms : conf->lua_kill_after_ms;
  if (limit) {
    aigw_watchdog_install();
    uint64_t every = limit / 4 < 50 ? 50 : limit / 4;
    uv_timer_start(&srv.watchdog, on_watchdog, every, every);
  }
  if (conf->watch) watch_start(&srv);
  for (int i = 0; i < srv.nworkers; i++) aigw_worker_start(&srv.workers[i]);
  pid_file_write(conf);
  aigw_log_info("aigw %s listening on %s%s%s with %d worker(s)", AIGW_VERSION, conf->listen[0],
                conf->admin_listen ? ", admin on " : "",
                conf->admin_listen ? conf->admin_listen : "", srv.nworkers);
  /* From here lines go through the log writer (log.h): workers never wait
   * for stderr (until here each line was written at once). It is stopped,
   * everything pending written, once the workers are joined. */
  if (aigw_log_writer_start() != 0) aigw_log_warn("log: no writer thread: writing lines at once");
  uv_run(&srv.loop, UV_RUN_DEFAULT);
  for (int i = 0; i < srv.nworkers; i++) aigw_worker_join(&srv.workers[i]);
  uv_close((uv_handle_t *)&srv.sigterm, NULL);
  uv_close((uv_handle_t *)&srv.sigint, NULL);
  uv_close((uv_handle_t *)&srv.sighup, NULL);
  uv_close((uv_handle_t *)&srv.reload_async, NULL);
  uv_close((uv_handle_t *)&srv.watchdog, NULL);
  watch_stop(&srv);
  uv_run(&srv.loop, UV_RUN_DEFAULT);
  aigw_free(srv.watch);
  if (conf->pid_file) unlink(conf->pid_file);
  uv_loop_close(&srv.loop);
  aigw_free(srv.workers);
  aigw_shdict_free_all();
  uv_mutex_destroy(&srv.mu);
  aigw_log_info("stopped");
  aigw_log_writer_stop();
  return 0;
}
