/* test_redis.c -- core/loop/redis.c against a real redis-server: URL parsing,
 * the protocol writer, commands and pipelines, many commands in flight on
 * one connection, AUTH and SELECT, timeouts (late replies reach nobody),
 * cancel, a refused connection and its back-off, a lost connection,
 * reconnecting after a restart, freeing a client from its own callback, and
 * a loop that an idle connection does not keep alive. And against a fake
 * Redis that misbehaves: an unsolicited reply, a malformed reply, replies
 * too large to hold; each drops the connection, never the process.
 *
 * The test starts redis-server itself on free 127.0.0.1 ports and stops it
 * by PID; without redis-server installed it says so and skips the tests
 * that need it. The fake server runs on the test's own loop. Every wait is
 * bounded by a guard timer. */
#include "loop/redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

/* ---------------------------------------------------------------- server */

typedef struct {
  pid_t pid;
  int port;
  char dir[64];
} server_t;

static server_t *servers[4];

static char *find_redis_server(void) {
  static char path[512];
  const char *env = getenv("PATH");
  if (env == NULL) env = "/usr/local/bin:/usr/bin:/bin";
  char *copy = strdup(env), *save = NULL;
  for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
    snprintf(path, sizeof path, "%s/redis-server", d);
    if (access(path, X_OK) == 0) {
      free(copy);
      return path;
    }
  }
  free(copy);
  return NULL;
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, (struct sockaddr *)&a, sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &len);
  close(fd);
  return ntohs(a.sin_port);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int can_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
  close(fd);
  return ok;
}

/* Starts redis-server on port (0: a free one); password may be NULL. */
static int server_start(server_t *s, int port, const char *password) {
  const char *bin = find_redis_server();
  if (bin == NULL) return -1;
  s->port = port ? port : free_port();
  snprintf(s->dir, sizeof s->dir, "/tmp/aigw-test-redis-XXXXXX");
  if (mkdtemp(s->dir) == NULL) return -1;
  char portstr[16];
  snprintf(portstr, sizeof portstr, "%d", s->port);
  const char *argv[20];
  int n = 0;
  argv[n++] = bin;
  argv[n++] = "--port";
  argv[n++] = portstr;
  argv[n++] = "--bind";
  argv[n++] = "127.0.0.1";
  argv[n++] = "--save";
  argv[n++] = "";
  argv[n++] = "--appendonly";
  argv[n++] = "no";
  argv[n++] = "--dir";
  argv[n++] = s->dir;
  argv[n++] = "--enable-debug-command";
  argv[n++] = "local";
  if (password) {
    argv[n++] = "--requirepass";
    argv[n++] = password;
  }
  argv[n] = NULL;
  s->pid = fork();
  if (s->pid == 0) {
    int devnull = open("/dev/null", 1);
    dup2(devnull, 1);
    execv(bin, (char *const *)argv);
    _exit(127);
  }
  for (int i = 0; i < 4; i++)
    if (servers[i] == NULL) {
      servers[i] = s;
      break;
    }
  uint64_t deadline = now_ms() + 10000;
  while (now_ms() < deadline) {
    if (can_connect(s->port)) return 0;
    int st;
    if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
      s->pid = 0;
      return -1;
    }
    usleep(10000);
  }
  return -1;
}

static void server_stop(server_t *s) {
  if (s->pid > 0) {
    kill(s->pid, SIGTERM);
    int st;
    waitpid(s->pid, &st, 0);
    s->pid = 0;
  }
  if (s->dir[0]) rmdir(s->dir);
  s->dir[0] = '\0';
  for (int i = 0; i < 4; i++)
    if (servers[i] == s) servers[i] = NULL;
}

static void stop_all_servers(void) {
  for (int i = 0; i < 4; i++)
    if (servers[i] && servers[i]->pid > 0) {
      kill(servers[i]->pid, SIGKILL);
      waitpid(servers[i]->pid, NULL, 0);
      if (servers[i]->dir[0]) rmdir(servers[i]->dir);
    }
}

/* ------------------------------------------------------------- helpers */

typedef struct {
  int calls;
  char err[256];
  int n;
  int type[8];
  long long integer[8];
  char str[8][512];
  size_t len[8];
  size_t elements[8];
  /* what to do from inside the callback */
  aigw_redis_t *free_me;
  int *order, *norder, id;
} result_t;

static void on_result(void *data, const char *err, redisReply **replies, int n) {
  result_t *r = data;
  r->calls++;
  r->n = n;
  if (r->order) r->order[(*r->norder)++] = r->id;
  if (err) {
    snprintf(r->err, sizeof r->err, "%s", err);
    CHECK(replies == NULL);
  } else {
    for (int i = 0; i < n && i < 8; i++) {
      r->type[i] = replies[i]->type;
      r->integer[i] = replies[i]->integer;
      r->len[i] = replies[i]->len;
      r->elements[i] = replies[i]->elements;
      if (replies[i]->str) snprintf(r->str[i], sizeof r->str[i], "%s", replies[i]->str);
    }
  }
  if (r->free_me) aigw_redis_free(r->free_me);
}

static int guard_fired;
static void on_guard(uv_timer_t *t) { guard_fired = 1; }

/* Runs the loop until *flag is set or ms pass; returns *flag. */
static int run_until(uv_loop_t *loop, const int *flag, int ms) {
  uv_timer_t guard;
  uv_timer_init(loop, &guard);
  guard_fired = 0;
  uv_timer_start(&guard, on_guard, (uint64_t)ms, 0);
  while (!*flag && !guard_fired) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return *flag;
}

typedef struct {
  uv_loop_t loop;
  aigw_dns_t *dns;
} env_t;

static void env_init(env_t *e) {
  uv_loop_init(&e->loop);
  e->dns = aigw_dns_new(&e->loop, 30);
}

static void env_close(env_t *e) {
  aigw_dns_free(e->dns);
  CHECK_EQ_INT(uv_run(&e->loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ_INT(uv_loop_close(&e->loop), 0);
}

static aigw_redis_t *client(env_t *e, const char *url, double ct, double t) {
  char err[256] = "";
  aigw_redis_t *r = aigw_redis_new(&e->loop, e->dns, url, ct, t, err, sizeof err);
  if (r == NULL) fprintf(stderr, "aigw_redis_new(%s): %s\n", url, err);
  CHECK(r != NULL);
  return r;
}

/* Formats up to 8 commands given as NULL-terminated argument lists. */
typedef struct {
  aigw_buf_t buf;
  size_t lens[64];
  int n;
} cmds_t;

static void add_cmd(cmds_t *c, ...) {
  const char *argv[16];
  size_t lens[16];
  int argc = 0;
  va_list ap;
  va_start(ap, c);
  const char *a;
  while ((a = va_arg(ap, const char *)) != NULL) {
    argv[argc] = a;
    lens[argc++] = strlen(a);
  }
  va_end(ap);
  size_t before = c->buf.len;
  CHECK_EQ_INT(aigw_redis_format(&c->buf, argc, argv, lens), 0);
  c->lens[c->n++] = c->buf.len - before;
}

/* Sends the commands; returns the op, or NULL with the error in res->err. */
static aigw_redis_op_t *send_cmds(aigw_redis_t *r, cmds_t *c, result_t *res) {
  const char *err = NULL;
  aigw_redis_op_t *op = aigw_redis_send(r, c->buf.data, c->lens, c->n, on_result, res, &err);
  if (op == NULL) snprintf(res->err, sizeof res->err, "%s", err ? err : "?");
  aigw_buf_free(&c->buf);
  c->n = 0;
  return op;
}

#define CMD(r, res, ...)                           \
  do {                                             \
    cmds_t c_ = {0};                               \
    add_cmd(&c_, __VA_ARGS__, (const char *)NULL); \
    CHECK(send_cmds((r), &c_, (res)) != NULL);     \
  } while (0)

static int have_server;

/* ----------------------------------------------------------- fake server */

/* A fake Redis on 127.0.0.1, served by the test's loop. The tests send only
 * PING, which is 14 bytes on the wire: each one read gets `reply` (when
 * set). fake_send writes any bytes on the current connection. */
typedef struct fake_s fake_t;

typedef struct {
  uv_tcp_t tcp;
  fake_t *f;
  size_t got;
} fake_conn_t;

struct fake_s {
  uv_tcp_t server;
  int port;
  int accepted;
  int closed; /* connections the client closed */
  fake_conn_t *cur;
  const char *reply;
  char rbuf[4096];
};

#define PING_BYTES 14 /* "*1\r\n$4\r\nPING\r\n" */

typedef struct {
  uv_write_t req;
  char *owned;
} fake_write_t;

static void fake_written(uv_write_t *req, int status) {
  fake_write_t *w = (fake_write_t *)req;
  (void)status; /* the client may have gone: what it did not read is moot */
  free(w->owned);
  free(w);
}

/* Sends len bytes of data (copied) to the current connection. */
static void fake_send(fake_t *f, const char *data, size_t len) {
  CHECK(f->cur != NULL);
  if (f->cur == NULL) return;
  fake_write_t *w = malloc(sizeof *w);
  w->owned = malloc(len);
  memcpy(w->owned, data, len);
  uv_buf_t b = uv_buf_init(w->owned, (unsigned)len);
  CHECK_EQ_INT(uv_write(&w->req, (uv_stream_t *)&f->cur->tcp, &b, 1, fake_written), 0);
}

static void fake_conn_closed(uv_handle_t *h) { free(h->data); }

static void fake_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  fake_conn_t *c = h->data;
  buf->base = c->f->rbuf;
  buf->len = sizeof c->f->rbuf;
}

static void fake_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  fake_conn_t *c = s->data;
  fake_t *f = c->f;
  if (n < 0) {
    f->closed++;
    if (f->cur == c) f->cur = NULL;
    uv_close((uv_handle_t *)&c->tcp, fake_conn_closed);
    return;
  }
  size_t before = c->got / PING_BYTES;
  c->got += (size_t)n;
  for (size_t i = before; i < c->got / PING_BYTES; i++)
    if (f->reply) fake_send(f, f->reply, strlen(f->reply));
}

static void fake_accept(uv_stream_t *server, int status) {
  fake_t *f = server->data;
  CHECK_EQ_INT(status, 0);
  fake_conn_t *c = calloc(1, sizeof *c);
  c->f = f;
  uv_tcp_init(server->loop, &c->tcp);
  c->tcp.data = c;
  CHECK_EQ_INT(uv_accept(server, (uv_stream_t *)&c->tcp), 0);
  f->accepted++;
  f->cur = c;
  uv_read_start((uv_stream_t *)&c->tcp, fake_alloc, fake_read);
}

static void fake_start(fake_t *f, uv_loop_t *loop) {
  memset(f, 0, sizeof *f);
  uv_tcp_init(loop, &f->server);
  f->server.data = f;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  CHECK_EQ_INT(uv_tcp_bind(&f->server, (const struct sockaddr *)&a, 0), 0);
  CHECK_EQ_INT(uv_listen((uv_stream_t *)&f->server, 16, fake_accept), 0);
  int len = sizeof a;
  uv_tcp_getsockname(&f->server, (struct sockaddr *)&a, &len);
  f->port = ntohs(a.sin_port);
}

static void fake_stop(fake_t *f) {
  if (f->cur) uv_close((uv_handle_t *)&f->cur->tcp, fake_conn_closed);
  f->cur = NULL;
  uv_close((uv_handle_t *)&f->server, NULL);
}

/* Runs the loop until the fake has read n bytes on its current connection
 * (or 5 s pass). */
static int wait_read(uv_loop_t *loop, fake_t *f, size_t n) {
  uv_timer_t guard;
  uv_timer_init(loop, &guard);
  guard_fired = 0;
  uv_timer_start(&guard, on_guard, 5000, 0);
  while (!(f->cur && f->cur->got >= n) && !guard_fired) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return f->cur && f->cur->got >= n;
}

static aigw_redis_t *fake_client(env_t *e, fake_t *f) {
  char url[64];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", f->port);
  return client(e, url, 2, 10);
}

/* ---------------------------------------------------------------- tests */

TEST(parse_url) {
  aigw_redis_url_t u;
  char err[200];
  CHECK_EQ_INT(aigw_redis_parse_url("redis://localhost", &u, err, sizeof err), 0);
  CHECK_EQ_STR(u.host, "localhost");
  CHECK_EQ_INT(u.port, 6379);
  CHECK(u.user == NULL && u.password == NULL);
  CHECK_EQ_INT(u.db, 0);
  aigw_redis_url_free(&u);

  CHECK_EQ_INT(aigw_redis_parse_url("REDIS://:s%40cr%3At@10.0.0.1:6380/3", &u, err, sizeof err), 0);
  CHECK_EQ_STR(u.host, "10.0.0.1");
  CHECK_EQ_INT(u.port, 6380);
  CHECK(u.user == NULL);
  CHECK_EQ_STR(u.password, "s@cr:t");
  CHECK_EQ_INT(u.db, 3);
  aigw_redis_url_free(&u);

  CHECK_EQ_INT(aigw_redis_parse_url("redis://app:pw@[::1]:7000/", &u, err, sizeof err), 0);
  CHECK_EQ_STR(u.host, "::1");
  CHECK_EQ_INT(u.port, 7000);
  CHECK_EQ_STR(u.user, "app");
  CHECK_EQ_STR(u.password, "pw");
  CHECK_EQ_INT(u.db, 0);
  aigw_redis_url_free(&u);

  /* the last @ ends the user info */
  CHECK_EQ_INT(aigw_redis_parse_url("redis://:p@ss@h", &u, err, sizeof err), 0);
  CHECK_EQ_STR(u.password, "p@ss");
  CHECK_EQ_STR(u.host, "h");
  aigw_redis_url_free(&u);

  const char *bad[] = {"http://h",        "rediss://h",
                       "redis://",        "redis://h:0",
                       "redis://h:65536", "redis://h:x",
                       "redis://h/x",     "redis://h/1?x=1",
                       "redis://pw@h",    "redis://:%zz@h",
                       "redis://[::1",    "redis://h:1x",
                       "redis://:%00@h",  NULL};
  for (int i = 0; bad[i]; i++) {
    err[0] = '\0';
    int rc = aigw_redis_parse_url(bad[i], &u, err, sizeof err);
    if (rc != -1) fprintf(stderr, "accepted %s\n", bad[i]);
    CHECK_EQ_INT(rc, -1);
    CHECK(err[0] != '\0');
  }
  aigw_redis_parse_url("rediss://h", &u, err, sizeof err);
  CHECK(strstr(err, "TLS") != NULL);
}

TEST(format) {
  aigw_buf_t b = {0};
  const char *argv[] = {"SET", "k", "a\r\nb"};
  size_t lens[] = {3, 1, 4};
  CHECK_EQ_INT(aigw_redis_format(&b, 3, argv, lens), 0);
  const char want[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n";
  CHECK_EQ_INT(b.len, sizeof want - 1);
  CHECK(memcmp(b.data, want, b.len) == 0);
  const char *empty[] = {""};
  size_t zero[] = {0};
  CHECK_EQ_INT(aigw_redis_format(&b, 1, empty, zero), 0);
  CHECK(memcmp(b.data + sizeof want - 1, "*1\r\n$0\r\n\r\n", 10) == 0);
  aigw_buf_free(&b);
}

TEST(bad_timeouts) {
  env_t e;
  env_init(&e);
  char err[200];
  CHECK(aigw_redis_new(&e.loop, e.dns, "redis://h", 0, 1, err, sizeof err) == NULL);
  CHECK(aigw_redis_new(&e.loop, e.dns, "redis://h", 1, -1, err, sizeof err) == NULL);
  CHECK(aigw_redis_new(&e.loop, e.dns, "redis://h:99999", 1, 1, err, sizeof err) == NULL);
  env_close(&e);
}

static server_t main_server;
static char main_url[64];

TEST(call_and_pipeline) {
  env_t e;
  env_init(&e);
  aigw_redis_t *r = client(&e, main_url, 2, 2);
  result_t a = {0}, b = {0};
  CMD(r, &a, "SET", "greeting", "hello");
  /* queued while connecting: goes out with the first write */
  cmds_t c = {0};
  add_cmd(&c, "GET", "greeting", NULL);
  add_cmd(&c, "GET", "missing", NULL);
  add_cmd(&c, "INCR", "greeting", NULL); /* an error reply */
  add_cmd(&c, "DEL", "list", NULL);
  add_cmd(&c, "RPUSH", "list", "x", "y", NULL);
  add_cmd(&c, "LRANGE", "list", "0", "-1", NULL);
  CHECK(send_cmds(r, &c, &b) != NULL);
  CHECK(run_until(&e.loop, &b.calls, 5000));
  CHECK_EQ_INT(a.calls, 1);
  CHECK_EQ_INT(a.type[0], REDIS_REPLY_STATUS);
  CHECK_EQ_STR(a.str[0], "OK");
  CHECK_EQ_INT(b.calls, 1);
  CHECK_EQ_INT(b.n, 6);
  CHECK_EQ_INT(b.type[0], REDIS_REPLY_STRING);
  CHECK_EQ_STR(b.str[0], "hello");
  CHECK_EQ_INT(b.type[1], REDIS_REPLY_NIL);
  CHECK_EQ_INT(b.type[2], REDIS_REPLY_ERROR);
  CHECK(strncmp(b.str[2], "ERR", 3) == 0);
  CHECK_EQ_INT(b.type[3], REDIS_REPLY_INTEGER);
  CHECK_EQ_INT(b.type[4], REDIS_REPLY_INTEGER);
  CHECK_EQ_INT(b.integer[4], 2);
  CHECK_EQ_INT(b.type[5], REDIS_REPLY_ARRAY);
  CHECK_EQ_INT(b.elements[5], 2);

  /* binary-safe values */
  result_t d = {0}, f = {0};
  {
    aigw_buf_t buf = {0};
    const char *argv[] = {"SET", "bin", "a\0b\r\n"};
    size_t lens[] = {3, 3, 5};
    aigw_redis_format(&buf, 3, argv, lens);
    const char *argv2[] = {"STRLEN", "bin"};
    size_t lens2[] = {6, 3};
    size_t l1 = buf.len;
    aigw_redis_format(&buf, 2, argv2, lens2);
    size_t ls[] = {l1, buf.len - l1};
    const char *err;
    CHECK(aigw_redis_send(r, buf.data, ls, 2, on_result, &d, &err) != NULL);
    aigw_buf_free(&buf);
  }
  CMD(r, &f, "GET", "bin");
  CHECK(run_until(&e.loop, &f.calls, 5000));
  CHECK_EQ_INT(d.integer[1], 5);
  CHECK_EQ_INT(f.len[0], 5);

  /* Idle: the client's handles do not keep the loop alive. */
  CHECK_EQ_INT(uv_run(&e.loop, UV_RUN_NOWAIT), 0);
  aigw_redis_free(r);
  env_close(&e);
}

TEST(many_in_flight_keep_their_order) {
  env_t e;
  env_init(&e);
  aigw_redis_t *r = client(&e, main_url, 2, 5);
  enum { N = 300 };
  static result_t res[N];
  int order[N], norder = 0;
  result_t del = {0};
  CMD(r, &del, "DEL", "counter");
  CHECK(run_until(&e.loop, &del.calls, 5000));
  for (int i = 0; i < N; i++) {
    memset(&res[i], 0, sizeof res[i]);
    res[i].order = order;
    res[i].norder = &norder;
    res[i].id = i;
    CMD(r, &res[i], "INCR", "counter");
  }
  CHECK(run_until(&e.loop, &res[N - 1].calls, 10000));
  CHECK_EQ_INT(norder, N);
  for (int i = 0; i < N; i++) {
    CHECK_EQ_INT(res[i].calls, 1);
    CHECK_EQ_INT(res[i].integer[0], i + 1); /* each caller got its own reply */
    CHECK_EQ_INT(order[i], i);
  }
  aigw_redis_free(r);
  env_close(&e);
}

TEST(host_name_is_resolved) {
  env_t e;
  env_init(&e);
  char url[64];
  snprintf(url, sizeof url, "redis://localhost:%d", main_server.port);
  aigw_redis_t *r = client(&e, url, 2, 2);
  result_t a = {0};
  CMD(r, &a, "PING");
  CHECK(run_until(&e.loop, &a.calls, 5000));
  CHECK_EQ_STR(a.str[0], "PONG");
  CHECK(aigw_dns_lookups(e.dns) >= 1);
  aigw_redis_free(r);
  env_close(&e);
}

TEST(timeout_drops_the_connection) {
  env_t e;
  env_init(&e);
  aigw_redis_t *r = client(&e, main_url, 2, 0.2);
  result_t warm = {0}, slow = {0}, behind = {0}, after = {0};
  CMD(r, &warm, "PING");
  CHECK(run_until(&e.loop, &warm.calls, 5000));
  uint64_t t0 = now_ms();
  CMD(r, &slow, "DEBUG", "SLEEP", "0.6");
  CMD(r, &behind, "PING");
  CHECK(run_until(&e.loop, &behind.calls, 5000));
  uint64_t took = now_ms() - t0;
  CHECK_EQ_STR(slow.err, "timeout");
  CHECK_EQ_STR(behind.err, "timeout");
  CHECK(took >= 150 && took < 550);
  /* Another client waits for the server to wake up. Then the next command
   * reconnects at once (no back-off after a timeout), and the late reply
   * reached nobody. */
  aigw_redis_t *patient = client(&e, main_url, 2, 5);
  result_t awake = {0};
  CMD(patient, &awake, "PING");
  CHECK(run_until(&e.loop, &awake.calls, 5000));
  CHECK_EQ_STR(awake.str[0], "PONG");
  aigw_redis_free(patient);
  CMD(r, &after, "ECHO", "fresh");
  CHECK(run_until(&e.loop, &after.calls, 5000));
  CHECK_EQ_STR(after.str[0], "fresh");
  CHECK_EQ_INT(slow.calls, 1);
  CHECK_EQ_INT(behind.calls, 1);
  aigw_redis_free(r);
  env_close(&e);
}

TEST(late_reply_after_timeout_is_dropped) {
  /* The server answers after the timeout on the same socket only if it
   * was not closed; either way no callback runs twice and nothing leaks. */
  env_t e;
  env_init(&e);
  aigw_redis_t *r = client(&e, main_url, 2, 0.1);
  result_t slow = {0};
  CMD(r, &slow, "DEBUG", "SLEEP", "0.3");
  CHECK(run_until(&e.loop, &slow.calls, 5000));
  CHECK_EQ_STR(slow.err, "timeout");
  int never = 0;
  run_until(&e.loop, &never, 400);
  CHECK_EQ_INT(slow.calls, 1);
  aigw_redis_free(r);
  env_close(&e);
}

TEST(cancel) {
  env_t e;
  env_init(&e);
  aigw_redis_t *r = client(&e, main_url, 2, 2);
  result_t a = {0}, b = {0}, c = {0}, w = {0};
  /* cancelled while waiting for the connection */
  cmds_t cm = {0};
  add_cmd(&cm, "PING", NULL);
  aigw_redis_op_t *op = send_cmds(r, &cm, &a);
  CHECK(op != NULL);
  aigw_redis_cancel(op);
  CMD(r, &w, "PING");
  CHECK(run_until(&e.loop, &w.calls, 5000));
  /* cancelled once written: its replies come and are dropped */
  add_cmd(&cm, "PING", NULL);
  add_cmd(&cm, "DEBUG", "SLEEP", "0.1", NULL);
  op = send_cmds(r, &cm, &b);
  CHECK(op != NULL);
  aigw_redis_cancel(op);
  CMD(r, &c, "ECHO", "next");
  CHECK(run_until(&e.loop, &c.calls, 5000));
  CHECK_EQ_INT(a.calls, 0);
  CHECK_EQ_INT(b.calls, 0);
  CHECK_EQ_STR(c.str[0], "next");
  aigw_redis_free(r);
  env_close(&e);
}

TEST(auth_and_select) {
  server_t s = {0};
  CHECK_EQ_INT(server_start(&s, 0, "s3cr@t"), 0);
  env_t e;
  env_init(&e);
  char url[128];
  snprintf(url, sizeof url, "redis://:s3cr%%40t@127.0.0.1:%d/5", s.port);
  aigw_redis_t *r5 = client(&e, url, 2, 2);
  snprintf(url, sizeof url, "redis://default:s3cr%%40t@127.0.0.1:%d", s.port);
  aigw_redis_t *r0 = client(&e, url, 2, 2);
  snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d", s.port);
  aigw_redis_t *bad = client(&e, url, 2, 2);
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", s.port);
  aigw_redis_t *none = client(&e, url, 2, 2);

  result_t set5 = {0}, get5 = {0}, get0 = {0}, wrong = {0}, again = {0}, noauth = {0};
  CMD(r5, &set5, "SET", "where", "db5");
  CMD(r5, &get5, "CLIENT", "INFO");
  CMD(r0, &get0, "GET", "where");
  CMD(bad, &wrong, "PING");
  CMD(none, &noauth, "PING");
  CHECK(run_until(&e.loop, &get5.calls, 5000));
  CHECK(run_until(&e.loop, &get0.calls, 5000));
  CHECK(run_until(&e.loop, &wrong.calls, 5000));
  CHECK(run_until(&e.loop, &noauth.calls, 5000));
  CHECK_EQ_STR(set5.str[0], "OK");
  CHECK(strstr(get5.str[0], " db=5 ") != NULL);
  CHECK_EQ_INT(get0.type[0], REDIS_REPLY_NIL);
  CHECK(strncmp(wrong.err, "redis unavailable: AUTH failed: WRONGPASS", 41) == 0);
  if (strncmp(wrong.err, "redis unavailable: AUTH failed: WRONGPASS", 41) != 0)
    fprintf(stderr, "got: %s\n", wrong.err);
  CHECK_EQ_INT(noauth.type[0], REDIS_REPLY_ERROR);
  CHECK(strncmp(noauth.str[0], "NOAUTH", 6) == 0);
  /* a failed AUTH backs off: the next command fails at once */
  cmds_t cm = {0};
  add_cmd(&cm, "PING", NULL);
  CHECK(send_cmds(bad, &cm, &again) == NULL);
  CHECK(strncmp(again.err, "redis unavailable: AUTH failed", 30) == 0);

  aigw_redis_free(r5);
  aigw_redis_free(r0);
  aigw_redis_free(bad);
  aigw_redis_free(none);
  env_close(&e);
  server_stop(&s);
}

TEST(refused_then_back_off_then_restart) {
  int port = free_port();
  env_t e;
  env_init(&e);
  char url[64];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
  aigw_redis_t *r = client(&e, url, 2, 2);
  result_t a = {0}, b = {0};
  cmds_t cm = {0};
  add_cmd(&cm, "PING", NULL);
  aigw_redis_op_t *op = send_cmds(r, &cm, &a);
  uint64_t t0 = now_ms();
  if (op) CHECK(run_until(&e.loop, &a.calls, 5000));
  CHECK_EQ_STR(a.err, "redis unavailable: Connection refused");
  CHECK(now_ms() - t0 < 500);
  /* within the back-off: fails at once, without a connection attempt */
  add_cmd(&cm, "PING", NULL);
  CHECK(send_cmds(r, &cm, &b) == NULL);
  CHECK_EQ_STR(b.err, a.err);

  server_t s = {0};
  CHECK_EQ_INT(server_start(&s, port, NULL), 0);
  /* after the back-off (at most 1 s), the next command connects */
  uint64_t deadline = now_ms() + 5000;
  int ok = 0;
  while (!ok && now_ms() < deadline) {
    result_t c = {0};
    add_cmd(&cm, "PING", NULL);
    if (send_cmds(r, &cm, &c) != NULL) {
      run_until(&e.loop, &c.calls, 3000);
      ok = c.calls && c.err[0] == '\0' && strcmp(c.str[0], "PONG") == 0;
    } else {
      int never = 0;
      run_until(&e.loop, &never, 50);
    }
  }
  CHECK(ok);

  /* the server goes away under an established connection */
  result_t blocked = {0}, ping = {0};
  CMD(r, &blocked, "BLPOP", "nothing", "3");
  server_stop(&s);
  CHECK(run_until(&e.loop, &blocked.calls, 5000));
  CHECK(strncmp(blocked.err, "redis connection lost: ", 23) == 0);
  if (strncmp(blocked.err, "redis connection lost: ", 23) != 0)
    fprintf(stderr, "got: %s\n", blocked.err);
  /* the next command tries again at once, and finds nobody */
  add_cmd(&cm, "PING", NULL);
  op = send_cmds(r, &cm, &ping);
  if (op) CHECK(run_until(&e.loop, &ping.calls, 5000));
  CHECK_EQ_STR(ping.err, "redis unavailable: Connection refused");
  aigw_redis_free(r);
  env_close(&e);
}

TEST(connect_timeout) {
  /* A listener that never accepts: its backlog fills, then connects hang. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, (struct sockaddr *)&a, sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &len);
  listen(fd, 0);
  int fillers[8], nf = 0;
  for (; nf < 8; nf++) {
    fillers[nf] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    connect(fillers[nf], (struct sockaddr *)&a, sizeof a);
  }
  env_t e;
  env_init(&e);
  char url[64];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", ntohs(a.sin_port));
  aigw_redis_t *r = client(&e, url, 0.2, 5);
  result_t res = {0};
  uint64_t t0 = now_ms();
  cmds_t cm = {0};
  add_cmd(&cm, "PING", NULL);
  aigw_redis_op_t *op = send_cmds(r, &cm, &res);
  CHECK(op != NULL);
  CHECK(run_until(&e.loop, &res.calls, 5000));
  uint64_t took = now_ms() - t0;
  /* Either the connect hung (timeout) or the kernel refused it. */
  CHECK(strncmp(res.err, "redis unavailable: ", 19) == 0);
  if (strcmp(res.err, "redis unavailable: connect timeout") == 0) CHECK(took >= 150 && took < 1000);
  aigw_redis_free(r);
  env_close(&e);
  for (int i = 0; i < nf; i++) close(fillers[i]);
  close(fd);
}

TEST(free_from_a_callback) {
  env_t e;
  env_init(&e);
  aigw_redis_t *r = client(&e, main_url, 2, 2);
  result_t a = {0}, b = {0}, c = {0};
  a.free_me = r;
  CMD(r, &a, "PING");
  CMD(r, &b, "PING");
  CMD(r, &c, "PING");
  CHECK(run_until(&e.loop, &c.calls, 5000));
  CHECK_EQ_INT(a.calls, 1);
  CHECK_EQ_STR(a.str[0], "PONG");
  CHECK_EQ_STR(b.err, "redis connection closed");
  CHECK_EQ_STR(c.err, "redis connection closed");
  env_close(&e);
}

TEST(close_while_connecting_and_after) {
  env_t e;
  env_init(&e);
  char url[64];
  snprintf(url, sizeof url, "redis://localhost:%d", main_server.port);
  aigw_redis_t *r = client(&e, url, 2, 2);
  result_t a = {0}, b = {0};
  CMD(r, &a, "PING");
  aigw_redis_close(r);
  CHECK_EQ_INT(a.calls, 1);
  CHECK_EQ_STR(a.err, "redis connection closed");
  cmds_t cm = {0};
  add_cmd(&cm, "PING", NULL);
  CHECK(send_cmds(r, &cm, &b) == NULL);
  CHECK_EQ_STR(b.err, "redis connection closed");
  /* the loop ends: nothing of the client is left open */
  CHECK_EQ_INT(uv_run(&e.loop, UV_RUN_DEFAULT), 0);
  aigw_redis_free(r);
  env_close(&e);
}

TEST(busy_client_keeps_the_loop_alive) {
  env_t e;
  env_init(&e);
  aigw_redis_t *r = client(&e, main_url, 2, 2);
  result_t a = {0};
  CMD(r, &a, "DEBUG", "SLEEP", "0.05");
  /* uv_run returns only once nothing is waiting */
  uv_run(&e.loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(a.calls, 1);
  CHECK_EQ_STR(a.str[0], "OK");
  aigw_redis_free(r);
  env_close(&e);
}

/* --- a Redis that misbehaves: the connection goes, the process stays --- */

TEST(unsolicited_reply_drops_the_connection) {
  env_t e;
  env_init(&e);
  fake_t f;
  fake_start(&f, &e.loop);
  f.reply = "+PONG\r\n";
  aigw_redis_t *r = fake_client(&e, &f);
  result_t a = {0}, b = {0};
  CMD(r, &a, "PING");
  CHECK(run_until(&e.loop, &a.calls, 5000));
  CHECK_EQ_STR(a.str[0], "PONG");
  /* Nothing is pending: hiredis 0.14 asserts on such a reply. */
  fake_send(&f, "+SURPRISE\r\n", 11);
  CHECK(run_until(&e.loop, &f.closed, 5000));
  /* The next command connects again. */
  CMD(r, &b, "PING");
  CHECK(run_until(&e.loop, &b.calls, 5000));
  CHECK_EQ_STR(b.str[0], "PONG");
  CHECK_EQ_INT(f.accepted, 2);
  aigw_redis_free(r);
  fake_stop(&f);
  env_close(&e);
}

TEST(reply_past_the_commands_drops_the_connection) {
  env_t e;
  env_init(&e);
  fake_t f;
  fake_start(&f, &e.loop);
  /* one reply too many, in the same read as the one expected */
  f.reply = "+PONG\r\n:1\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n";
  aigw_redis_t *r = fake_client(&e, &f);
  result_t a = {0}, b = {0};
  CMD(r, &a, "PING");
  CHECK(run_until(&e.loop, &f.closed, 5000));
  CHECK_EQ_INT(a.calls, 1);
  CHECK_EQ_STR(a.str[0], "PONG");
  f.reply = "+PONG\r\n";
  CMD(r, &b, "PING");
  CHECK(run_until(&e.loop, &b.calls, 5000));
  CHECK_EQ_STR(b.str[0], "PONG");
  aigw_redis_free(r);
  fake_stop(&f);
  env_close(&e);
}

TEST(malformed_reply_fails_the_waiting_commands) {
  env_t e;
  env_init(&e);
  fake_t f;
  fake_start(&f, &e.loop);
  aigw_redis_t *r = fake_client(&e, &f);
  result_t a = {0}, b = {0}, c = {0};
  CMD(r, &a, "PING");
  CMD(r, &b, "PING");
  /* both commands are in: answer with garbage */
  CHECK(wait_read(&e.loop, &f, 2 * PING_BYTES));
  fake_send(&f, "?what\r\n", 7);
  CHECK(run_until(&e.loop, &b.calls, 5000));
  CHECK(strncmp(a.err, "redis connection lost: ", 23) == 0);
  CHECK(strncmp(b.err, "redis connection lost: ", 23) == 0);
  CHECK(run_until(&e.loop, &f.closed, 5000));
  f.reply = "+PONG\r\n";
  CMD(r, &c, "PING");
  CHECK(run_until(&e.loop, &c.calls, 5000));
  CHECK_EQ_STR(c.str[0], "PONG");
  aigw_redis_free(r);
  fake_stop(&f);
  env_close(&e);
}

/* The fake answers PING with len bytes of data: the command must fail with
 * "reply too large", and the next one connect again. */
static void too_large(const char *what, const char *data, size_t len) {
  env_t e;
  env_init(&e);
  fake_t f;
  fake_start(&f, &e.loop);
  aigw_redis_t *r = fake_client(&e, &f);
  result_t a = {0}, b = {0};
  CMD(r, &a, "PING");
  CHECK(wait_read(&e.loop, &f, PING_BYTES));
  fake_send(&f, data, len);
  CHECK(run_until(&e.loop, &a.calls, 10000));
  if (strcmp(a.err, "redis connection lost: reply too large") != 0)
    fprintf(stderr, "%s: a.err = \"%s\"\n", what, a.err);
  CHECK_EQ_STR(a.err, "redis connection lost: reply too large");
  f.reply = "+PONG\r\n";
  CMD(r, &b, "PING");
  CHECK(run_until(&e.loop, &b.calls, 5000));
  CHECK_EQ_STR(b.str[0], "PONG");
  aigw_redis_free(r);
  fake_stop(&f);
  env_close(&e);
}

TEST(reply_too_large_drops_the_connection) {
  aigw_buf_t b = {0};
  /* a bulk string of 100 MB, of which 33 MiB arrive: more than is kept */
  size_t n = 33 * 1024 * 1024;
  aigw_buf_append_str(&b, "$100000000\r\n");
  CHECK_EQ_INT(aigw_buf_reserve(&b, n), 0);
  memset(b.data + b.len, 'x', n);
  b.len += n;
  too_large("bulk", b.data, b.len);
  /* an array that says it has two billion elements */
  too_large("array", "*2000000000\r\n", 13);
  /* 2 million small replies in nested arrays: 8 MB on the wire, far more
   * as reply objects */
  b.len = 0;
  aigw_buf_append_str(&b, "*100\r\n");
  for (int i = 0; i < 100; i++) {
    aigw_buf_append_str(&b, "*20000\r\n");
    for (int j = 0; j < 20000; j++) aigw_buf_append(&b, ":1\r\n", 4);
  }
  too_large("nested", b.data, b.len);
  aigw_buf_free(&b);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  atexit(stop_all_servers);
  RUN(parse_url);
  RUN(format);
  RUN(bad_timeouts);
  RUN(unsolicited_reply_drops_the_connection);
  RUN(reply_past_the_commands_drops_the_connection);
  RUN(malformed_reply_fails_the_waiting_commands);
  RUN(reply_too_large_drops_the_connection);
  if (server_start(&main_server, 0, NULL) != 0) {
    printf(
        "# SKIP: redis-server is not installed or did not start: the tests that need it "
        "were not run\n");
    return TEST_SUMMARY();
  }
  have_server = 1;
  snprintf(main_url, sizeof main_url, "redis://127.0.0.1:%d", main_server.port);
  RUN(call_and_pipeline);
  RUN(many_in_flight_keep_their_order);
  RUN(host_name_is_resolved);
  RUN(timeout_drops_the_connection);
  RUN(late_reply_after_timeout_is_dropped);
  RUN(cancel);
  RUN(auth_and_select);
  RUN(refused_then_back_off_then_restart);
  RUN(connect_timeout);
  RUN(free_from_a_callback);
  RUN(close_while_connecting_and_after);
  RUN(busy_client_keeps_the_loop_alive);
  server_stop(&main_server);
  (void)have_server;
  return TEST_SUMMARY();
}
