/* gateway.c -- see gateway.h. */
#include "gateway.h"

#include <errno.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "base/shdict.h"
#include "http/http_conn.h"
#include "loop/redis.h"
#include "lua/lua_vm.h"
#include "server/config_load.h"
#include "server/server.h"
#include "upstream/upstream.h"

#define DIE(...)                       \
  do {                                 \
    fprintf(stderr, "fuzz gateway: "); \
    fprintf(stderr, __VA_ARGS__);      \
    fputc('\n', stderr);               \
    exit(1);                           \
  } while (0)

/* A gateway that keeps finding work this long is spinning: a finding. */
#define SETTLE_MAX_TURNS 200000

static struct {
  aigw_loop_t w;
  aigw_lua_host_t host;
  aigw_config_t *conf;
  aigw_listener_t listener;
  struct sockaddr_in addr; /* the listener's */
  int up_fd;               /* the provider's listening socket, or -1 */
  struct sockaddr_in up_addr;
  char path[256];
  int started;
} gw = {.up_fd = -1};

aigw_loop_t *fgw_loop(void) { return &gw.w; }

static int quiescent(uv_loop_t *l) {
  if (uv_backend_timeout(l) == 0) return 0;
  struct pollfd p = {.fd = uv_backend_fd(l), .events = POLLIN};
  return poll(&p, 1, 0) == 0;
}

void fgw_settle(void) {
  uv_loop_t *l = &gw.w.uv;
  for (int i = 0; i < SETTLE_MAX_TURNS; i++) {
    if (quiescent(l)) return;
    uv_run(l, UV_RUN_NOWAIT);
  }
  fprintf(stderr, "fuzz gateway: the loop still has work after %d turns\n", SETTLE_MAX_TURNS);
  abort();
}

void fgw_settle_late(int ms) {
  uv_loop_t *l = &gw.w.uv;
  for (int i = 0; i < 100; i++) {
    fgw_settle();
    struct pollfd p = {.fd = uv_backend_fd(l), .events = POLLIN};
    if (poll(&p, 1, ms) == 0) return;
  }
}

int fgw_busy(void) { return gw.w.nconns > 0; }

/* --- set-up and teardown --- */

static char *replace_all(const char *s, const char *what, const char *with) {
  size_t n = strlen(s), wl = strlen(what), tl = strlen(with);
  char *out = malloc(n * (tl + 1) + 1);
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    if (strncmp(s + i, what, wl) == 0) {
      memcpy(out + o, with, tl);
      o += tl;
      i += wl;
    } else {
      out[o++] = s[i++];
    }
  }
  out[o] = '\0';
  return out;
}

static void teardown(void) {
  if (!gw.started) return;
  gw.started = 0;
  aigw_loop_t *w = &gw.w;
  /* As a worker stops: connections and the listener, then the rest of the
   * loop. Whatever a run leaked is then reported by LeakSanitizer at exit. */
  for (aigw_conn_t *c = w->conns, *next; c; c = next) {
    next = c->next;
    aigw_conn_close(c);
  }
  uv_close((uv_handle_t *)&gw.listener.tcp, NULL);
  if (aigw__loop_close(w) != 0) fprintf(stderr, "fuzz gateway: loop closed with handles open\n");
  aigw_shdict_thread_cleanup();
  aigw_shdict_free_all();
  aigw_config_free(gw.conf);
  if (gw.up_fd >= 0) close(gw.up_fd);
  unlink(gw.path);
}

void fgw_upstream_listen(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 64) != 0 ||
      getsockname(fd, (struct sockaddr *)&gw.up_addr, &len) != 0)
    DIE("upstream listener: %s", strerror(errno));
  gw.up_fd = fd;
}

int fgw_upstream_accept(void) {
  if (gw.up_fd < 0) return -1;
  int fd = accept4(gw.up_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd >= 0) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

void fgw_start(const char *name, const char *config_text) {
  const char *prefix = getenv("AIGW_PREFIX");
  if (prefix == NULL || *prefix == '\0') prefix = AIGW_DEFAULT_PREFIX;
  const char *tmp = getenv("TMPDIR");
  snprintf(gw.path, sizeof gw.path, "%s/aigw-fuzz-%s-%ld.lua", tmp && *tmp ? tmp : "/tmp", name,
           (long)getpid());
  char upstream[64];
  snprintf(upstream, sizeof upstream, "127.0.0.1:%u",
           gw.up_fd >= 0 ? ntohs(gw.up_addr.sin_port) : 1);
  char *text = replace_all(config_text, "@UPSTREAM@", upstream);
  FILE *f = fopen(gw.path, "w");
  if (f == NULL) DIE("cannot write %s", gw.path);
  fputs(text, f);
  fclose(f);
  free(text);

  char err[2048];
  gw.conf = aigw_config_load(gw.path, prefix, err, sizeof err);
  if (gw.conf == NULL) DIE("%s", err);
  aigw_log_level = (aigw_log_level_t)gw.conf->log_level;
  aigw_log_set_thread_id(1);
  for (int i = 0; i < gw.conf->nzones; i++) {
    const char *e = NULL;
    if (aigw_shdict_lookup(gw.conf->zones[i].name) == NULL &&
        aigw_shdict_new(gw.conf->zones[i].name, gw.conf->zones[i].size, &e) == NULL)
      DIE("shared zone %s: %s", gw.conf->zones[i].name, e ? e : "cannot create");
  }
  aigw_loop_t *w = &gw.w;
  gw.host.nworkers = 1;
  w->id = 1;
  w->host = &gw.host;
  w->conf = gw.conf;
  w->max_conns = gw.conf->max_connections;
  uv_loop_init(&w->uv);
  w->dns = aigw_dns_new(&w->uv, 30.0);
  w->pool = aigw_pool_new(w);
  if (aigw_lua_worker_init(w, err, sizeof err) != 0) DIE("%s", err);
  int rc = aigw__listener_open(w, &gw.listener, "127.0.0.1:0", 0);
  if (rc < 0) DIE("listen: %s", uv_strerror(rc));
  int len = sizeof gw.addr;
  uv_tcp_getsockname(&gw.listener.tcp, (struct sockaddr *)&gw.addr, &len);
  gw.started = 1;
  atexit(teardown);
  fgw_settle();
}

/* --- the client's end --- */

int fgw_connect(void) {
  int before = gw.w.nconns;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) DIE("socket: %s", strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  /* Non-blocking, so that libFuzzer's timer signal (EINTR) cannot leave a
   * connect half done: on loopback it completes within a few turns. */
  if (connect(fd, (struct sockaddr *)&gw.addr, sizeof gw.addr) != 0 && errno != EINPROGRESS &&
      errno != EINTR)
    DIE("connect: %s", strerror(errno));
  for (int i = 0; i < 1000; i++) {
    fgw_settle();
    struct pollfd pf = {.fd = fd, .events = POLLOUT};
    if (poll(&pf, 1, 0) == 1) break;
  }
  int err = 0;
  socklen_t elen = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0)
    DIE("connect: %s", strerror(err));
  fgw_settle();
  if (gw.w.nconns != before + 1) DIE("the gateway did not accept the connection");
  return fd;
}

int fgw_send(int fd, const void *p, size_t n) {
  const char *s = p;
  while (n > 0) {
    ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
    if (k > 0) {
      s += k;
      n -= (size_t)k;
      continue;
    }
    if (k < 0 && errno == EINTR) continue;
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      /* The gateway reads no more (it pauses a client that does not read
       * its answers): that is its right, the rest is not sent. */
      uv_run(&gw.w.uv, UV_RUN_NOWAIT);
      fgw_settle();
      struct pollfd pf = {.fd = fd, .events = POLLOUT};
      if (poll(&pf, 1, 0) == 1 && (pf.revents & POLLOUT)) continue;
      return -1;
    }
    return -1;
  }
  return 0;
}

int fgw_recv(int fd, aigw_buf_t *out) {
  char tmp[16384];
  for (;;) {
    ssize_t k = recv(fd, tmp, sizeof tmp, 0);
    if (k > 0) {
      if (aigw_buf_append(out, tmp, (size_t)k) != 0) DIE("no memory");
      continue;
    }
    if (k == 0) return 1;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return 1; /* reset */
  }
}

void fgw_close(int fd) {
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(fd);
}

/* --- reading responses --- */

typedef struct {
  fgw_responses_t *out;
  const uint8_t *heads;
  int nheads;
  int in_final;
  int n_id;       /* x-request-id headers in this head */
  int conn_close; /* this head says Connection: close */
  int closed;     /* an earlier response said it */
  int field_is_id, field_is_conn;
  const char *const *names;
} resp_state_t;

static int name_listed(const char *const *names, const char *at, size_t len) {
  for (; *names; names++) {
    size_t n = strlen(*names);
    if ((*names)[n - 1] == '*') {
      if (len >= n - 1 && strncasecmp(at, *names, n - 1) == 0) return 1;
    } else if (len == n && strncasecmp(at, *names, n) == 0) {
      return 1;
    }
  }
  return 0;
}

static int r_message_begin(llhttp_t *p) {
  resp_state_t *s = p->data;
  if (s->closed && s->out->reason == NULL) s->out->reason = "a response after Connection: close";
  s->n_id = 0;
  s->conn_close = 0;
  return 0;
}

static int r_header_field(llhttp_t *p, const char *at, size_t len) {
  resp_state_t *s = p->data;
  s->field_is_id = len == 12 && strncasecmp(at, "x-request-id", 12) == 0;
  s->field_is_conn = len == 10 && strncasecmp(at, "connection", 10) == 0;
  if (s->field_is_id) s->n_id++;
  if (s->names && !name_listed(s->names, at, len) && s->out->odd_name[0] == '\0') {
    size_t n = len < sizeof s->out->odd_name - 1 ? len : sizeof s->out->odd_name - 1;
    memcpy(s->out->odd_name, at, n);
    s->out->odd_name[n] = '\0';
  }
  return 0;
}

static int r_header_value(llhttp_t *p, const char *at, size_t len) {
  resp_state_t *s = p->data;
  if (memchr(at, '\0', len) && s->out->reason == NULL) s->out->reason = "a NUL in a header value";
  if (s->field_is_conn && len >= 5 && strncasecmp(at, "close", 5) == 0) s->conn_close = 1;
  if (s->field_is_id && (len == 0 || len > AIGW_REQUEST_ID_MAX) && s->out->reason == NULL)
    s->out->reason = "an x-request-id that no request id can be";
  return 0;
}

static int r_headers_complete(llhttp_t *p) {
  resp_state_t *s = p->data;
  fgw_responses_t *o = s->out;
  int status = p->status_code;
  if (status < 200) {
    o->interim++;
    s->in_final = 0;
    if (status == 101 && o->reason == NULL) o->reason = "a 101 response";
    return 0;
  }
  int i = o->responses++;
  if (i == 0) o->first_status = status;
  s->in_final = 1;
  if (s->n_id != 1 && o->reason == NULL) o->reason = "a response without exactly one x-request-id";
  if (s->conn_close) s->closed = 1;
  /* A HEAD request's response has no body, whatever its head says. */
  if (i < s->nheads && s->heads[i]) return 1;
  return 0;
}

static int r_message_complete(llhttp_t *p) {
  resp_state_t *s = p->data;
  if (s->in_final) s->out->complete++;
  s->in_final = 0;
  return 0;
}

static const llhttp_settings_t resp_settings = {
    .on_message_begin = r_message_begin,
    .on_header_field = r_header_field,
    .on_header_value = r_header_value,
    .on_headers_complete = r_headers_complete,
    .on_message_complete = r_message_complete,
};

void fgw_read_responses(const char *p, size_t n, const uint8_t *heads, int nheads,
                        const char *const *names, fgw_responses_t *out) {
  memset(out, 0, sizeof *out);
  resp_state_t s = {.out = out, .heads = heads, .nheads = nheads, .names = names};
  llhttp_t parser;
  llhttp_init(&parser, HTTP_RESPONSE, &resp_settings);
  parser.data = &s;
  if (n == 0) return;
  llhttp_errno_t err = llhttp_execute(&parser, p, n);
  out->error = err;
  if (err != HPE_OK && out->reason == NULL) out->reason = llhttp_get_error_reason(&parser);
}

/* --- reading requests --- */

static int q_message_begin(llhttp_t *p) {
  fgw_requests_t *r = p->data;
  r->begun++;
  return 0;
}

/* Whether each request is a HEAD is known from its request line: a head
 * refused later (a bad header) is still answered as a HEAD's, no body. */
static int q_method_complete(llhttp_t *p) {
  fgw_requests_t *r = p->data;
  int i = r->begun - 1;
  if (i >= 0 && i < (int)sizeof r->heads) {
    r->heads[i] = llhttp_get_method(p) == HTTP_HEAD;
    if (r->nheads < i + 1) r->nheads = i + 1;
  }
  return 0;
}

static const llhttp_settings_t req_settings = {
    .on_message_begin = q_message_begin,
    .on_method_complete = q_method_complete,
};

void fgw_read_requests(const char *p, size_t n, fgw_requests_t *out) {
  memset(out, 0, sizeof *out);
  llhttp_t parser;
  llhttp_init(&parser, HTTP_REQUEST, &req_settings);
  parser.data = out;
  while (n > 0) {
    llhttp_errno_t err = llhttp_execute(&parser, p, n);
    if (err != HPE_PAUSED_UPGRADE) break;
    /* Whatever follows an Upgrade is read as more requests: a bound that is
     * loose rather than wrong. */
    const char *at = llhttp_get_error_pos(&parser);
    n -= (size_t)(at - p);
    p = at;
    llhttp_init(&parser, HTTP_REQUEST, &req_settings);
    parser.data = out;
  }
}
