/* lua_test.c -- the C side of the spec helpers (lua/aigw/test/helpers.lua),
 * loaded only by `aigw test` as the module "aigw.test.core".
 *
 *   request{ method, path, query, headers, body, client, admin }
 *       a detached request: a real aigw_req_t whose URL and headers are
 *       offsets into a buffer laid out like a parsed request head, with a
 *       connection struct behind it (no socket) carrying the client's
 *       loopback and admin flags. Every accessor of lua_request.c reads it
 *       as it would read a request from the server. Freed by the GC.
 *   exdata(co, req|lightuserdata|nil)
 *       sets the request a coroutine answers aigw.request for; returns the
 *       previous one (a light userdata, or nil).
 *   run(req, fn, ...) / call(req, fn, ...)
 *       fn(...) for the request: in an lthread that may wait on the loop
 *       (as access runs), or on a plain thread that may not (as
 *       header_filter, body_filter and log run).
 *   spawn{ argv... } / kill(pid)
 *       a child process with its stdout on a pipe; spawn waits (up to ten
 *       seconds) for its first line and returns pid, line. Children are
 *       killed when aigw exits, even if a spec forgot them.
 *   capture_start() / capture_stop()
 *       sends stderr (the error log) to a temporary file until stop, which
 *       returns what was written. */
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/addr.h"
#include "base/alloc.h"
#include "http/http_conn.h"
#include "lua/lthread.h"
#include "lua/lua_vm.h"
#include "lua/watchdog.h"

#define REQ_MT "aigw.test.request"

typedef struct {
  aigw_conn_t conn;
  aigw_req_t req;
  aigw_buf_t head; /* the request head: conn.rbuf once complete */
} test_req_t;

static const struct {
  const char *name;
  int method;
} methods[] = {
#define XX(num, name, string) {#string, num},
    HTTP_METHOD_MAP(XX)
#undef XX
};

static int method_of(const char *name) {
  for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
    if (strcmp(methods[i].name, name) == 0) return methods[i].method;
  return -1;
}

static const char *opt_string(lua_State *L, int t, const char *field, const char *def,
                              size_t *len) {
  lua_getfield(L, t, field);
  const char *s = def;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "request: field '%s' must be a string, got %s", field, luaL_typename(L, -1));
    s = lua_tolstring(L, -1, len);
  } else if (len) {
    *len = def ? strlen(def) : 0;
  }
  lua_pop(L, 1); /* the string stays alive: it is in the options table */
  return s;
}

static int client_is_loopback(lua_State *L, const char *ip, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
  if (uv_inet_pton(AF_INET, ip, &in4->sin_addr) == 0) {
    in4->sin_family = AF_INET;
  } else if (uv_inet_pton(AF_INET6, ip, &in6->sin6_addr) == 0) {
    in6->sin6_family = AF_INET6;
  } else {
    return luaL_error(L, "request: client must be an IPv4 or IPv6 address, got '%s'", ip);
  }
  return aigw_sockaddr_is_loopback((struct sockaddr *)ss);
}

/* The head is laid out as the parser leaves it: "METHOD URL HTTP/1.1\r\n"
 * then "name: value\r\n" lines, with the request's offsets pointing in. */
static void head_add(lua_State *L, aigw_buf_t *b, const char *p, size_t n) {
  if (aigw_buf_append(b, p, n) != 0) luaL_error(L, "request: out of memory");
}

static void add_header(lua_State *L, aigw_req_t *r, aigw_buf_t *head, const char *name, size_t nlen,
                       const char *value, size_t vlen) {
  if (r->nhdrs >= AIGW_MAX_HEADERS)
    luaL_error(L, "request: more than %d headers", AIGW_MAX_HEADERS);
  aigw_hdr_t *h = &r->hdrs[r->nhdrs++];
  h->name = (uint32_t)head->len;
  h->name_len = (uint32_t)nlen;
  head_add(L, head, name, nlen);
  head_add(L, head, ": ", 2);
  h->value = (uint32_t)head->len;
  h->value_len = (uint32_t)vlen;
  head_add(L, head, value, vlen);
  head_add(L, head, "\r\n", 2);
}

static int cmp_strings(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* headers: { {"Name", "value"}, ... } in that order, then any name = value
 * fields, sorted by name (so a spec always sees the same order). */
static void add_headers(lua_State *L, int opts, aigw_req_t *r, aigw_buf_t *head) {
  lua_getfield(L, opts, "headers");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  int t = lua_gettop(L);
  if (!lua_istable(L, t)) luaL_error(L, "request: headers must be a table");
  size_t n = lua_objlen(L, t);
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, t, (int)i);
    size_t nl = 0, vl = 0;
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &nl) : NULL;
    const char *value = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &vl) : NULL;
    if (name == NULL || value == NULL)
      luaL_error(L, "request: headers[%d] must be { \"name\", \"value\" }", (int)i);
    add_header(L, r, head, name, nl, value, vl);
    lua_pop(L, 3);
  }
  const char *names[AIGW_MAX_HEADERS + 1];
  int nnames = 0;
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "request: header '%s' must be a string", lua_tostring(L, -2));
      if (nnames > AIGW_MAX_HEADERS)
        luaL_error(L, "request: more than %d headers", AIGW_MAX_HEADERS);
      names[nnames++] = lua_tostring(L, -2); /* keys of t: alive while t is */
    } else if (lua_type(L, -2) != LUA_TNUMBER) {
      luaL_error(L, "request: header names must be strings");
    }
    lua_pop(L, 1);
  }
  qsort(names, (size_t)nnames, sizeof names[0], cmp_strings);
  for (int i = 0; i < nnames; i++) {
    lua_getfield(L, t, names[i]);
    size_t vl;
    const char *value = lua_tolstring(L, -1, &vl);
    add_header(L, r, head, names[i], strlen(names[i]), value, vl);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static void req_free_parts(test_req_t *t) {
  aigw_buf_free(&t->head);
  t->conn.rbuf = NULL;
  aigw_buf_free(&t->req.body);
}

static int l_request(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  test_req_t *t = lua_newuserdata(L, sizeof *t); /* index 2 */
  memset(t, 0, sizeof *t);
  luaL_getmetatable(L, REQ_MT);
  lua_setmetatable(L, 2);
  aigw_conn_t *c = &t->conn;
  aigw_req_t *r = &t->req;
  c->loop = aigw_lua_loop(L);
  c->req = r;
  r->conn = c;
  r->ctx_ref = LUA_NOREF;

  size_t mlen, plen, qlen = 0, blen = 0;
  const char *method = opt_string(L, 1, "method", "GET", &mlen);
  const char *path = opt_string(L, 1, "path", "/", &plen);
  const char *query = opt_string(L, 1, "query", NULL, &qlen);
  const char *body = opt_string(L, 1, "body", NULL, &blen);
  const char *client = opt_string(L, 1, "client", "127.0.0.1", NULL);
  int m = method_of(method);
  if (m < 0) return luaL_error(L, "request: unknown method '%s'", method);
  if (plen == 0 || path[0] != '/') return luaL_error(L, "request: path must start with '/'");
  if (memchr(path, '?', plen))
    return luaL_error(L, "request: put the query in 'query', not in 'path'");
  lua_getfield(L, 1, "admin");
  c->admin = (uint8_t)lua_toboolean(L, -1);
  lua_pop(L, 1);
  c->loopback = (uint8_t)client_is_loopback(L, client, &c->peer);

  /* Build the head in a buffer the userdata owns (so an error half-way
   * leaks nothing); its data becomes the connection's rbuf. */
  aigw_buf_t *head = &t->head;
  r->method = (uint8_t)m;
  r->http_minor = 1;
  r->keepalive = 1;
  r->headers_done = 1;
  r->complete = 1;
  head_add(L, head, method, mlen);
  head_add(L, head, " ", 1);
  r->url = (uint32_t)head->len;
  head_add(L, head, path, plen);
  r->path_len = (uint32_t)plen;
  if (query) {
    head_add(L, head, "?", 1);
    head_add(L, head, query, qlen);
  }
  r->url_len = (uint32_t)(head->len - r->url);
  head_add(L, head, " HTTP/1.1\r\n", 11);
  add_headers(L, 1, r, head);
  head_add(L, head, "\r\n", 2);
  c->rbuf = head->data;
  c->rlen = c->parsed = (uint32_t)head->len;
  c->rcap = (uint32_t)head->cap;

  aigw__req_identify(r, c->rbuf + r->url);
  if (body && blen && aigw_buf_append(&r->body, body, blen) != 0)
    return luaL_error(L, "request: out of memory");
  if (c->loop) r->start_ms = uv_now(&c->loop->uv);
  return 1;
}

static test_req_t *check_req(lua_State *L, int i) { return luaL_checkudata(L, i, REQ_MT); }

static int l_req_gc(lua_State *L) {
  test_req_t *t = luaL_checkudata(L, 1, REQ_MT);
  req_free_parts(t);
  return 0;
}

static int l_req_tostring(lua_State *L) {
  test_req_t *t = luaL_checkudata(L, 1, REQ_MT);
  lua_pushfstring(L, "aigw.test.request %s %s", llhttp_method_name((llhttp_method_t)t->req.method),
                  t->req.id);
  return 1;
}

/* The raw aigw_req_t pointer, as a light userdata (for ffi.cast). */
static int l_req_ptr(lua_State *L) {
  lua_pushlightuserdata(L, &check_req(L, 1)->req);
  return 1;
}

static int l_exdata(lua_State *L) {
  lua_State *co = lua_isnoneornil(L, 1) ? L : lua_tothread(L, 1);
  if (co == NULL) return luaL_argerror(L, 1, "coroutine or nil expected");
  void *p = NULL;
  if (lua_type(L, 2) == LUA_TUSERDATA) p = &check_req(L, 2)->req;
  else if (lua_type(L, 2) == LUA_TLIGHTUSERDATA) p = lua_touserdata(L, 2);
  else if (!lua_isnoneornil(L, 2)) return luaL_argerror(L, 2, "request or nil expected");
  void *prev = lua_getexdata(co);
  lua_setexdata(co, p);
  if (prev) lua_pushlightuserdata(L, prev);
  else lua_pushnil(L);
  return 1;
}

/* --- running code for a request --- */

/* core.run(req|nil, fn, ...): fn(...) in a new lthread of this generation
 * whose exdata is the request, as a request's plugin chain runs: it may
 * wait on the loop, and aigw.exit ends it with an answer. The caller waits
 * for it (when the caller is an lthread; otherwise fn must not wait).
 * Returns "ok", results... | "exit", status, body, lines | "error", err. */
typedef struct {
  aigw_lthread_t *parent; /* waiting for the child; NULL while in l_run */
  aigw_lthread_t *child;
  int finished, status;
} run_op_t;

static aigw_gen_t *current_gen(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "aigw.gen");
  aigw_gen_t *g = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return g;
}

/* Moves the outcome of co (stopped with status) onto `to`; returns the
 * number of values pushed. */
static int push_outcome(lua_State *to, lua_State *co, int status) {
  int n = lua_gettop(co);
  if (!lua_checkstack(to, n + 2)) n = 0;
  if (status == 0) {
    lua_pushstring(to, "ok");
    lua_xmove(co, to, n);
    return n + 1;
  }
  if (status == LUA_YIELD) {
    /* aigw.exit yields a light userdata marker, then status, body, lines. */
    if (n >= 1 && lua_type(co, 1) == LUA_TLIGHTUSERDATA) {
      lua_pushstring(to, "exit");
      lua_xmove(co, to, n - 1);
      return n;
    }
    lua_pushstring(to, "error");
    lua_pushstring(to,
                   "the code yielded outside the aigw API (coroutine.yield on its own "
                   "coroutine)");
    return 2;
  }
  lua_pushstring(to, "error");
  if (n > 0) lua_xmove(co, to, 1);
  else lua_pushstring(to, "(no error value)");
  return 2;
}

static void run_child_done(aigw_lthread_t *t, int status) {
  run_op_t *op = t->owner;
  op->finished = 1;
  op->status = status;
  aigw_lthread_t *parent = op->parent;
  if (parent == NULL) return; /* finished inside l_run, which takes the outcome */
  int n = push_outcome(parent->co, t->co, status);
  op->child = NULL;
  aigw_lthread_free(t);
  aigw_free(op);
  aigw_lthread_resume(parent, n);
}

/* The waiting caller went away (the run is being torn down). */
static void run_cancel(void *p) {
  run_op_t *op = p;
  aigw_lthread_t *child = op->child;
  op->child = NULL;
  if (child) aigw_lthread_free(child);
  aigw_free(op);
}

static void *request_arg(lua_State *L, int i) {
  if (lua_type(L, i) == LUA_TUSERDATA) return &check_req(L, i)->req;
  if (!lua_isnil(L, i)) luaL_argerror(L, i, "request or nil expected");
  return NULL;
}

/* core.body_filter(req, can?): whether the plugin under test has a
 * body_filter (what a generation would know); returns whether a phase
 * asked for it with aigw.response.filter_body(). */
static int l_body_filter(lua_State *L) {
  aigw_req_t *r = &check_req(L, 1)->req;
  if (lua_gettop(L) >= 2) r->can_filter_body = lua_toboolean(L, 2);
  lua_pushboolean(L, r->filter_body);
  return 1;
}

static int l_run(lua_State *L) {
  void *req = request_arg(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  int nargs = lua_gettop(L) - 2;
  aigw_gen_t *g = current_gen(L);
  if (g == NULL) return luaL_error(L, "run: no generation in this VM");
  run_op_t *op = aigw_try_malloc(sizeof *op);
  if (op == NULL) return luaL_error(L, "run: no memory");
  memset(op, 0, sizeof *op);
  lua_pushvalue(L, 2);
  lua_xmove(L, g->L, 1);
  aigw_lthread_t *t = aigw_lthread_new(g, op, run_child_done);
  if (t == NULL) {
    aigw_free(op);
    return luaL_error(L, "run: no memory");
  }
  op->child = t;
  lua_setexdata(t->co, req);
  for (int i = 3; i <= nargs + 2; i++) lua_pushvalue(L, i);
  lua_xmove(L, t->co, nargs);
  aigw_lthread_t *self = aigw_lthread_current(L);
  aigw_lthread_start(t, nargs);
  if (op->finished) {
    int n = push_outcome(L, t->co, op->status);
    aigw_lthread_free(t);
    aigw_free(op);
    return n;
  }
  if (self == NULL) {
    aigw_lthread_free(t); /* cancels what it waits on */
    aigw_free(op);
    lua_pushstring(L, "error");
    lua_pushstring(L,
                   "the code waited on the loop (aigw.sleep, HTTP, Redis), which it cannot do "
                   "when run from a coroutine a spec made itself");
    return 2;
  }
  op->parent = self;
  return aigw_lthread_wait(L, self, op, run_cancel);
}

/* core.call(req|nil, fn, ...): fn(...) on a thread that is not an lthread,
 * with the request in exdata: how the phases that cannot wait
 * (header_filter, body_filter, log) run. Returns "ok", results... or
 * "error", err. */
static int l_call(lua_State *L) {
  void *req = request_arg(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  int nargs = lua_gettop(L) - 2;
  lua_State *S = lua_newthread(L); /* index nargs + 3 */
  int thread_idx = lua_gettop(L);
  lua_setexdata2(S, NULL); /* not an lthread: nothing here may wait */
  lua_setexdata(S, req);
  for (int i = 2; i <= nargs + 2; i++) lua_pushvalue(L, i);
  lua_xmove(L, S, nargs + 1);
  int rc = lua_pcall(S, nargs, LUA_MULTRET, 0);
  if (aigw__lua_run.hooked) aigw__lua_unhook(S); /* aigw.exit in a filter */
  lua_setexdata(S, NULL);
  int n = lua_gettop(S);
  if (!lua_checkstack(L, n + 2)) return luaL_error(L, "call: too many results");
  lua_pushstring(L, rc == 0 ? "ok" : "error");
  if (rc != 0) n = n > 0 ? 1 : 0;
  lua_xmove(S, L, n);
  lua_remove(L, thread_idx);
  return n + 1;
}

/* --- child processes (the mock upstream) --- */

#define MAX_CHILDREN 64
/* Each child keeps its stdout pipe: the read end stays open until the child
 * has been reaped, so whatever it prints while stopping never fails. */
static struct {
  pid_t pid;
  int fd;
} children[MAX_CHILDREN];

static void stop_child(int i) {
  pid_t pid = children[i].pid;
  kill(pid, SIGTERM);
  int status, done = 0;
  /* A child that ignores SIGTERM for two seconds gets SIGKILL. */
  for (int n = 0; n < 200 && !done; n++) {
    pid_t rc = waitpid(pid, &status, WNOHANG);
    if (rc == pid || (rc < 0 && errno != EINTR)) done = 1;
    else usleep(10000);
  }
  if (!done) {
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  }
  close(children[i].fd);
  children[i].pid = 0;
  children[i].fd = -1;
}

void aigw__test_kill_children(void) {
  for (int i = 0; i < MAX_CHILDREN; i++)
    if (children[i].pid > 0) stop_child(i);
}

static int l_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int argc = (int)lua_objlen(L, 1);
  if (argc < 1 || argc > 63) return luaL_argerror(L, 1, "1 to 63 arguments expected");
  const char *argv[64];
  for (int i = 0; i < argc; i++) {
    lua_rawgeti(L, 1, i + 1);
    argv[i] = lua_tostring(L, -1); /* kept alive by the table */
    lua_pop(L, 1);
    if (argv[i] == NULL) return luaL_argerror(L, 1, "strings expected");
  }
  argv[argc] = NULL;
  int slot = -1;
  for (int i = 0; i < MAX_CHILDREN && slot < 0; i++)
    if (children[i].pid == 0) slot = i;
  if (slot < 0) return luaL_error(L, "spawn: too many children");
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "pipe: %s", strerror(errno));
    return 2;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    lua_pushnil(L);
    lua_pushfstring(L, "fork: %s", strerror(errno));
    return 2;
  }
  if (pid == 0) {
    /* The child: dies with us, even if we crash. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);
    dup2(fds[1], 1);
    execvp(argv[0], (char *const *)argv);
    _exit(127);
  }
  close(fds[1]);
  children[slot].pid = pid;
  children[slot].fd = fds[0];
  /* Its first line, within ten seconds. */
  char line[512];
  size_t n = 0;
  int found = 0;
  uint64_t deadline = uv_hrtime() / 1000000 + 10000;
  while (n < sizeof line - 1) {
    uint64_t now = uv_hrtime() / 1000000;
    if (now >= deadline) break;
    struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
    int rc = poll(&pfd, 1, (int)(deadline - now));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) break;
    ssize_t got = read(fds[0], line + n, 1);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    if (line[n] == '\n') {
      found = 1;
      break;
    }
    n++;
  }
  if (!found) {
    stop_child(slot);
    lua_pushnil(L);
    lua_pushfstring(L, "spawn %s: no line on its stdout within 10 s", argv[0]);
    return 2;
  }
  lua_pushinteger(L, pid);
  lua_pushlstring(L, line, n);
  return 2;
}

static int l_kill(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  for (int i = 0; i < MAX_CHILDREN; i++)
    if (children[i].pid == pid && pid > 0) {
      stop_child(i);
      lua_pushboolean(L, 1);
      return 1;
    }
  lua_pushboolean(L, 0);
  return 1;
}

/* --- stderr capture (the error log's lines, for specs) --- */

static int capture_fd = -1, saved_stderr = -1;

static int l_capture_start(lua_State *L) {
  if (capture_fd >= 0) return luaL_error(L, "stderr is already being captured");
  char name[] = "/tmp/aigw-test-log-XXXXXX";
  int fd = mkstemp(name);
  if (fd < 0) return luaL_error(L, "capture: mkstemp: %s", strerror(errno));
  unlink(name);
  fflush(stderr);
  saved_stderr = dup(2);
  if (saved_stderr < 0 || dup2(fd, 2) < 0) {
    int e = errno;
    close(fd);
    if (saved_stderr >= 0) close(saved_stderr);
    saved_stderr = -1;
    return luaL_error(L, "capture: %s", strerror(e));
  }
  capture_fd = fd;
  return 0;
}

/* Ends the capture and returns what was written to stderr meanwhile. */
static int l_capture_stop(lua_State *L) {
  if (capture_fd < 0) return luaL_error(L, "stderr is not being captured");
  fflush(stderr);
  dup2(saved_stderr, 2);
  close(saved_stderr);
  saved_stderr = -1;
  int fd = capture_fd;
  capture_fd = -1;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  if (lseek(fd, 0, SEEK_SET) == 0) {
    char chunk[4096];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof chunk)) > 0 || (n < 0 && errno == EINTR))
      if (n > 0) luaL_addlstring(&b, chunk, (size_t)n);
  }
  close(fd);
  luaL_pushresult(&b);
  return 1;
}

int aigw__luaopen_test_core(lua_State *L) {
  if (luaL_newmetatable(L, REQ_MT)) {
    lua_pushcfunction(L, l_req_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_req_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_newtable(L);
    lua_pushcfunction(L, l_req_ptr);
    lua_setfield(L, -2, "ptr");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"request", l_request},
                                 {"exdata", l_exdata},
                                 {"run", l_run},
                                 {"call", l_call},
                                 {"body_filter", l_body_filter},
                                 {"spawn", l_spawn},
                                 {"kill", l_kill},
                                 {"capture_start", l_capture_start},
                                 {"capture_stop", l_capture_stop},
                                 {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  return 1;
}

/* Registers the module for require "aigw.test.core". */
void aigw__test_core_preload(lua_State *L) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, aigw__luaopen_test_core);
  lua_setfield(L, -2, "aigw.test.core");
  lua_pop(L, 2);
}
