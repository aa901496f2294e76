/* lua_vm.h -- the LuaJIT side of a worker: creating a VM, entering it for a
 * request, and reading back what the plugins decided. */
#ifndef AIGW_LUA_VM_H
#define AIGW_LUA_VM_H

#include <lua.h>

#include "http/http_conn.h"

typedef struct aigw_gen_s aigw_gen_t;

/* A generation: one VM with one config and one set of plugins. A worker
 * serves new requests on its current generation; a reload builds the next
 * one beside it, and the old one is closed when the last request, timer or
 * thread that started on it has finished (refs == 0). */
struct aigw_gen_s {
  aigw_loop_t *loop;
  lua_State *L;
  unsigned long id; /* 1 for the first, +1 per reload */
  int refs;         /* the worker's (while current) + each lthread */
  int retired;      /* replaced: timers stop, close at refs == 0 */
  /* the runtime's phase entry points (registry refs, LUA_NOREF if none) */
  int handler_ref;       /* access, routing, upstream: handler(ctx) */
  int route_ref;         /* routing, upstream: route(ctx), when the handler
                              * returned before the body had come */
  int header_filter_ref; /* header_filter(ctx, status, lines) */
  int body_filter_ref;   /* body_filter(ctx, chunk, eof) */
  int log_ref;           /* log(ctx, status) */
  uint8_t filter_all;    /* header_filter runs on every response (else on request) */
  uint8_t filter_errors; /* header_filter runs on upstream errors (>= 400) */
  lua_State *sync;       /* thread for the phases that cannot wait */
  int sync_ref;
  struct aigw_timer_s *timers; /* aigw.timer timers not yet fired */
  aigw_gen_t *next;            /* the worker's list of retired generations */
};

/* What the process offers the Lua side of its workers (aigw_core.reload,
 * aigw_core.status, aigw_core.worker_count). The server installs one in
 * each loop (loop->host) before the loop's VM is built; with none (NULL),
 * there is one worker, Lua is not watched, and reload and status are not
 * available. Any member may be NULL. */
typedef struct {
  unsigned long generation; /* the generation serving */
  int reloading;            /* a reload is under way */
  int has_last;             /* a reload has been answered: */
  int last_ok;              /*   whether it took */
  char last[1024];          /*   "generation N" or why it was rejected */
} aigw_process_status_t;

typedef struct aigw_lua_host_s {
  int nworkers;
  void *ctx;
  /* Asks for a reload (any thread): returns the ticket; the worker later
   * calls aigw_lua_reload_answer with the reloads done. */
  unsigned long (*reload)(void *ctx);
  /* The process's reload state, and worker i's loop (0-based; its stat_*
   * counters are read with relaxed atomic loads). */
  void (*status)(void *ctx, aigw_process_status_t *st);
  aigw_loop_t *(*worker_loop)(void *ctx, int i);
} aigw_lua_host_t;

/* lua_reload.c: resumes the lthreads waiting in aigw_core.reload whose
 * ticket is covered by `done`, with (true, msg) or (nil, msg). */
void aigw_lua_reload_answer(aigw_loop_t *loop, unsigned long done, int ok, const char *msg);

/* Refreshes the loop's VM memory counters for the admin status. */
void aigw_lua_note_memory(aigw_loop_t *loop);

/* Builds a generation for loop from its config file: a new VM, the runtime,
 * init_worker. Returns NULL with the error in err. */
aigw_gen_t *aigw_gen_new(aigw_loop_t *loop, char *err, size_t errlen);
/* A generation with a bare VM (the aigw API, no config, no plugins): for
 * `aigw test`. */
aigw_gen_t *aigw_gen_new_bare(aigw_loop_t *loop, char *err, size_t errlen);
static inline void aigw_gen_ref(aigw_gen_t *g) { g->refs++; }
/* Drops a reference; a retired generation is closed at zero. */
void aigw_gen_unref(aigw_gen_t *g);
/* Marks g replaced: its timers are cancelled and it is closed once unused. */
void aigw_gen_retire(aigw_gen_t *g);

/* A fresh VM with the standard libraries, cjson preloaded, the aigw_core C
 * module, and package.path set to <prefix>/lua and <prefix>/plugins. */
lua_State *aigw_lua_new_state(const char *prefix);

/* Builds the loop's first generation (loop->gen): the runtime, its
 * init_worker with the config. Fills the HTTP hooks (http_hooks.h) first.
 * Returns 0, or -1 with the error written to err. On the main thread,
 * before the loop's thread runs. */
int aigw_lua_worker_init(aigw_loop_t *loop, char *err, size_t errlen);
void aigw_lua_worker_close(aigw_loop_t *loop);

/* Runs the request through the plugin chain in a new coroutine and acts on
 * the outcome: a response, or an upstream exchange. */
void aigw_lua_handle_request(aigw_req_t *r);
/* Runs the log phase for a finished request (when some plugin has one). */
void aigw_lua_log_phase(aigw_req_t *r);
/* Releases the request's coroutine and ctx. */
void aigw_lua_request_release(aigw_req_t *r);

/* The later phases (see upstream.c's use). header_filter: 0 continue with
 * status, lines and len (kept alive by the request's ctx), 1 a plugin called
 * aigw.exit (send it with aigw_lua_respond_exit once the exchange is gone),
 * -1 the phase failed (answer 500). body_filter: 0 with the replacement
 * piece in out (valid until the next call), 1 when that piece is the last
 * of the response (the filter ended the client's stream before the
 * upstream's: end it now, and do not read or reuse the upstream), -1 on
 * error; err non-NULL says
 * the upstream failed mid-body (eof is then 1): what the filter returns is
 * the response's last words (an error event), nothing means cut it off. */
int aigw_lua_header_filter(aigw_req_t *r, int *status, const char **lines, size_t *len,
                           int from_upstream, const char *body, size_t blen);
int aigw_lua_body_filter(aigw_req_t *r, const char *in, size_t len, int eof, const char *err,
                         const char **out, size_t *outlen);
/* The last call of a body that was only tapped for its usage member
 * (r->tap_usage): body_filter gets "" and, as its usage argument, the
 * member's JSON text (NULL: none found). */
int aigw_lua_body_filter_usage(aigw_req_t *r, const char *usage, size_t ulen);
void aigw_lua_respond_exit(aigw_req_t *r);
/* An upstream's error answer held whole (status >= 400, a plugin filters
 * errors): answered through the filters, which see its body at once. */
void aigw_lua_respond_upstream(aigw_req_t *r, int status, const char *lines, size_t hlen,
                               const char *body, size_t blen);

size_t aigw_gen_memory_kb(aigw_gen_t *g);

/* Registration of the C parts of aigw_core (table on top of L). */
void aigw__lua_register_target(lua_State *L);  /* lua_target.c */
void aigw__lua_register_timer(lua_State *L);   /* lua_timer.c: sleep, timers */
void aigw__lua_register_admin(lua_State *L);   /* lua_reload.c: reload, status */
void aigw__lua_register_http(lua_State *L);    /* lua_http.c: aigw.http */
void aigw__lua_register_attempt(lua_State *L); /* lua_attempt.c: proxy_attempt */
void aigw__lua_register_body(lua_State *L);    /* lua_body.c: read_body */
void aigw__lua_register_redis(lua_State *L);   /* lua_redis.c: redis_client */
void aigw__lua_register_exit(lua_State *L);    /* lua_phases.c: exit, exit_sync, need_body */

/* The body a request's Lua waits for is complete: resume it, or start
 * the routing its handler left for then (aigw_core.need_body). */
void aigw_lua_body_ready(aigw_req_t *r);

/* lua_timer.c: cancels a generation's pending timers; stops the worker's
 * callbacks in flight (shutdown). */
void aigw__timers_cancel(aigw_gen_t *g);
void aigw__timers_stop_runs(aigw_loop_t *loop);

#endif
