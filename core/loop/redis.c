/* redis.c -- a Redis client on hiredis 0.14's asynchronous API (see redis.h).
 *
 * Ownership and the rules that keep hiredis's callbacks safe:
 *   - The client owns its hiredis context (r->ac) while it is current. A
 *     context is dropped by detaching it first (ac->data = NULL, r->ac =
 *     NULL): every callback hiredis still makes on it finds no client.
 *   - hiredis calls each command's callback exactly once: with the reply,
 *     or with NULL when the context goes. The privdata is the operation,
 *     which counts those callbacks (pending) and is freed only when it is
 *     finished (callback run, or cancelled: op->r == NULL) and pending is 0.
 *     So a reply that comes after a timeout or a cancel finds a finished
 *     operation and is dropped.
 *   - An unfinished operation is on exactly one list of its client: waiting
 *     (no connection yet; it keeps a copy of its commands), sent (written,
 *     in order, so the head has the earliest deadline) or failing (being
 *     failed by drop()).
 *   - User callbacks may re-enter anything, aigw_redis_free included: every
 *     entry from the loop holds r->depth, and a free asked for meanwhile
 *     happens when the outermost entry leaves.
 *   - hiredis 0.14 does not guard its connect callback against a free from
 *     inside it, so nothing here frees a context from on_connect; on a
 *     failed connect hiredis frees the context itself right after.
 *   - hiredis hands a reply to a command's callback and frees it when the
 *     callback returns. A pipeline keeps the earlier replies of its batch
 *     by moving their contents into a reply of its own (steal()).
 *
 * The event glue is ours rather than hiredis 0.14's adapters/libuv.h: that
 * one ignores a poll error (libuv reports POLLERR as a status, and stops
 * the handle), so a refused connect or a reset connection would go
 * unnoticed until a timeout. Ours hands the error to hiredis, which finds
 * it on the socket.
 *
 * The link is plaintext, so what comes back is not trusted. hiredis 0.14
 * asserts (aborts the process) on a reply no command waits for, and holds
 * whatever size a reply announces. Its reader builds replies through
 * functions it lets us replace: ours refuse a top-level reply when no
 * callback is pending, and a reply whose objects pass REPLY_MAX; the glue
 * refuses to read past REPLY_MAX of unparsed bytes. A refused reply drops
 * the connection like any lost one (commands waiting on it fail, the next
 * command connects again). */
#include "loop/redis.h"

#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/errors.h"
#include "base/log.h"
#include "loop/loop.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000
#define DEFAULT_PORT 6379
/* The most one reply may hold: its unparsed bytes, or its objects (each
 * counted as a redisReply, plus its string or its element pointers). */
#define REPLY_MAX (32u * 1024 * 1024)

typedef struct link_s {
  struct link_s *next, *prev;
} link_t;

static void list_init(link_t *h) { h->next = h->prev = h; }
static int list_empty(const link_t *h) { return h->next == h; }

static void list_push(link_t *h, link_t *n) {
  n->next = h;
  n->prev = h->prev;
  h->prev->next = n;
  h->prev = n;
}

static void list_remove(link_t *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->next = n->prev = n;
}

/* Appends every node of from, in order, to the end of to. */
static void list_append_all(link_t *to, link_t *from) {
  if (list_empty(from)) return;
  from->next->prev = to->prev;
  to->prev->next = from->next;
  from->prev->next = to;
  to->prev = from->prev;
  list_init(from);
}

enum { ST_IDLE, ST_RESOLVING, ST_CONNECTING, ST_READY };

struct aigw_redis_op_s {
  link_t link;     /* first member: a link is its operation */
  aigw_redis_t *r; /* NULL once finished */
  aigw_redis_cb cb;
  void *data;
  uint64_t deadline;    /* loop ms, once written */
  int n;                /* commands */
  int received;         /* replies kept so far (all but the last) */
  int pending;          /* hiredis callbacks still to come */
  char *buf;            /* the commands, while waiting */
  size_t *lens;         /* n */
  redisReply **replies; /* n */
};

struct aigw_redis_s {
  uv_loop_t *loop;
  aigw_dns_t *dns;
  aigw_redis_url_t url;
  char *url_str;
  uint64_t connect_timeout_ms, timeout_ms;
  uv_timer_t timer;
  int state;
  redisAsyncContext *ac;
  aigw_dns_query_t *dnsq;
  uint64_t connect_deadline;
  int setup_pending; /* AUTH / SELECT replies still to come */
  link_t waiting, sent, failing;
  uint64_t retry_at; /* no new connection attempt before (loop ms) */
  unsigned backoff_ms;
  char reason[160]; /* why the last connection attempt failed */
  char errmsg[200]; /* what aigw_redis_send last returned */
  int closed;
  int depth; /* entries from the loop in progress */
  int free_asked;
  int destroyed;
  int timer_state; /* 0 open, 1 closing, 2 closed */
  /* the worker's clients */
  aigw_loop_t *owner; /* NULL: not one of a loop's clients */
  aigw_redis_t *next;
  int refs;
};

/* ------------------------------------------------------------------ URL */

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decodes s[0..n) into a new string; NULL on a bad escape or NUL. */
static char *pct_decode(const char *s, size_t n) {
  char *out = aigw_malloc(n + 1), *o = out;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%') {
      if (i + 2 >= n) goto bad;
      int a = hexval(s[i + 1]), b = hexval(s[i + 2]);
      if (a < 0 || b < 0 || (a == 0 && b == 0)) goto bad;
      *o++ = (char)(a * 16 + b);
      i += 2;
    } else {
      *o++ = s[i];
    }
  }
  *o = '\0';
  return out;
bad:
  aigw_free(out);
  return NULL;
}

void aigw_redis_url_free(aigw_redis_url_t *u) {
  aigw_free(u->host);
  aigw_free(u->user);
  aigw_free(u->password);
  memset(u, 0, sizeof *u);
}

int aigw_redis_parse_url(const char *url, aigw_redis_url_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  out->port = DEFAULT_PORT;
  const char *p;
  if (strncasecmp(url, "redis://", 8) == 0) {
    p = url + 8;
  } else if (strncasecmp(url, "rediss://", 9) == 0) {
    snprintf(err, errlen, "rediss:// (Redis over TLS) is not supported");
    return -1;
  } else {
    snprintf(err, errlen, "expected a redis:// URL");
    return -1;
  }
  size_t alen = strcspn(p, "/?#");
  const char *aend = p + alen;
  /* userinfo: everything up to the last '@' of the authority */
  const char *at = NULL;
  for (const char *q = p; q < aend; q++)
    if (*q == '@') at = q;
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (colon == NULL) {
      snprintf(err, errlen, "expected :password@ or user:password@ before the host");
      return -1;
    }
    if (colon > p && (out->user = pct_decode(p, (size_t)(colon - p))) == NULL) goto bad_escape;
    if ((out->password = pct_decode(colon + 1, (size_t)(at - colon - 1))) == NULL) goto bad_escape;
    p = at + 1;
  }
  const char *hs = p, *he;
  if (*p == '[') {
    he = memchr(p, ']', (size_t)(aend - p));
    if (he == NULL) {
      snprintf(err, errlen, "unterminated IPv6 address");
      goto fail;
    }
    hs = p + 1;
    p = he + 1;
  } else {
    while (p < aend && *p != ':') p++;
    he = p;
  }
  if (he == hs) {
    snprintf(err, errlen, "missing host");
    goto fail;
  }
  out->host = aigw_strndup(hs, (size_t)(he - hs));
  if (p < aend && *p == ':') {
    long port = 0;
    const char *q = p + 1;
    while (q < aend && *q >= '0' && *q <= '9' && port <= 65535) port = port * 10 + (*q++ - '0');
    if (q == p + 1 || q != aend || port < 1 || port > 65535) {
      snprintf(err, errlen, "bad port");
      goto fail;
    }
    out->port = (uint16_t)port;
    p = q;
  }
  if (p != aend) {
    snprintf(err, errlen, "unexpected characters after the host");
    goto fail;
  }
  if (*p == '/') {
    const char *q = ++p;
    long db = 0;
    while (*q >= '0' && *q <= '9' && db < 1000000) db = db * 10 + (*q++ - '0');
    if (*q != '\0' || db >= 1000000) {
      snprintf(err, errlen, "the path must be a database number");
      goto fail;
    }
    out->db = (int)db;
  } else if (*p != '\0') {
    snprintf(err, errlen, "query strings and fragments are not supported");
    goto fail;
  }
  return 0;
bad_escape:
  snprintf(err, errlen, "bad percent-encoding in the user or password");
fail:
  aigw_redis_url_free(out);
  return -1;
}

/* ------------------------------------------------------------ protocol */

int aigw_redis_format(aigw_buf_t *b, int argc, const char *const *argv, const size_t *argvlen) {
  size_t need = 1 + 20 + 2;
  for (int i = 0; i < argc; i++) need += 1 + 20 + 2 + argvlen[i] + 2;
  if (aigw_buf_reserve(b, need) != 0) return AIGW_ENOMEM_REQ;
  char *o = b->data + b->len;
  *o++ = '*';
  o += aigw_u64toa((unsigned long long)argc, o);
  *o++ = '\r';
  *o++ = '\n';
  for (int i = 0; i < argc; i++) {
    *o++ = '$';
    o += aigw_u64toa((unsigned long long)argvlen[i], o);
    *o++ = '\r';
    *o++ = '\n';
    if (argvlen[i]) memcpy(o, argv[i], argvlen[i]);
    o += argvlen[i];
    *o++ = '\r';
    *o++ = '\n';
  }
  b->len = (size_t)(o - b->data);
  return 0;
}

/* ------------------------------------------------------- event glue */

/* Lives as long as its context (freed in the poll handle's close callback,
 * after hiredis's cleanup), so the reader may point at it. */
typedef struct {
  redisAsyncContext *ac; /* NULL once hiredis has cleaned up */
  uv_poll_t poll;
  int events;
  redisReplyObjectFunctions *make; /* hiredis's own reply functions */
  size_t reply_cost;               /* of the reply being read */
  const char *refused;             /* why a reply was refused, or NULL */
} ev_t;

static void refuse_connection(redisAsyncContext *ac, const char *why);

static void ev_on_poll(uv_poll_t *h, int status, int events) {
  ev_t *e = h->data;
  /* An error (libuv stopped the handle): let hiredis read or write, and
   * so meet the socket's error. */
  if (status < 0) events = e->events;
  if (e->ac && (events & UV_READABLE)) {
    /* A reply hiredis is still waiting for the rest of: read no more of it
     * than REPLY_MAX (each read adds at most 16 KiB). */
    const redisReader *rd = e->ac->c.reader;
    if (rd && rd->len - rd->pos > REPLY_MAX) {
      refuse_connection(e->ac, "reply too large");
      return;
    }
    redisAsyncHandleRead(e->ac);
  }
  if (e->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(e->ac);
  if (status < 0 && e->ac && e->events) uv_poll_start(&e->poll, e->events, ev_on_poll);
}

static void ev_update(ev_t *e) {
  if (e->events) uv_poll_start(&e->poll, e->events, ev_on_poll);
  else uv_poll_stop(&e->poll);
}

static void ev_add_read(void *p) {
  ev_t *e = p;
  e->events |= UV_READABLE;
  ev_update(e);
}

static void ev_del_read(void *p) {
  ev_t *e = p;
  e->events &= ~UV_READABLE;
  ev_update(e);
}

static void ev_add_write(void *p) {
  ev_t *e = p;
  e->events |= UV_WRITABLE;
  ev_update(e);
}

static void ev_del_write(void *p) {
  ev_t *e = p;
  e->events &= ~UV_WRITABLE;
  ev_update(e);
}

static void ev_on_closed(uv_handle_t *h) { aigw_free(h->data); }

static void ev_cleanup(void *p) {
  ev_t *e = p;
  if (e->ac == NULL) return; /* some hiredis versions call it twice */
  e->ac = NULL;
  uv_close((uv_handle_t *)&e->poll, ev_on_closed);
}

/* The reader's reply functions: a reply is made only when some command
 * waits for it and while it stays within REPLY_MAX. NULL makes the reader
 * fail, and hiredis drop the connection. */
static int reply_allowed(const redisReadTask *task, size_t cost) {
  ev_t *e = task->privdata;
  if (e->ac == NULL) return 0;
  if (task->parent == NULL) {
    e->reply_cost = 0;
    if (e->ac->replies.head == NULL) {
      e->refused = "unsolicited reply";
      return 0;
    }
  }
  e->reply_cost += sizeof(redisReply) + cost;
  if (e->reply_cost > REPLY_MAX) {
    e->refused = "reply too large";
    return 0;
  }
  return 1;
}

static void *make_string(const redisReadTask *task, char *str, size_t len) {
  if (!reply_allowed(task, len)) return NULL;
  return ((ev_t *)task->privdata)->make->createString(task, str, len);
}

static void *make_array(const redisReadTask *task, int elements) {
  size_t n = elements > 0 ? (size_t)elements : 0;
  /* checked before hiredis allocates the element pointers */
  size_t cost = n > REPLY_MAX / sizeof(redisReply *) ? REPLY_MAX + 1 : n * sizeof(redisReply *);
  if (!reply_allowed(task, cost)) return NULL;
  return ((ev_t *)task->privdata)->make->createArray(task, elements);
}

static void *make_integer(const redisReadTask *task, long long value) {
  if (!reply_allowed(task, 0)) return NULL;
  return ((ev_t *)task->privdata)->make->createInteger(task, value);
}

static void *make_nil(const redisReadTask *task) {
  if (!reply_allowed(task, 0)) return NULL;
  return ((ev_t *)task->privdata)->make->createNil(task);
}

/* Read-only once built: shared by every worker thread. */
static redisReplyObjectFunctions guarded_replies = {
    make_string, make_array, make_integer, make_nil, freeReplyObject,
};

static int ev_attach(redisAsyncContext *ac, uv_loop_t *loop) {
  ev_t *e = aigw_calloc(1, sizeof *e);
  if (uv_poll_init(loop, &e->poll, ac->c.fd) != 0) {
    aigw_free(e);
    return -1;
  }
  e->poll.data = e;
  e->ac = ac;
  e->make = ac->c.reader->fn;
  ac->c.reader->fn = &guarded_replies;
  ac->c.reader->privdata = e;
  ac->ev.data = e;
  ac->ev.addRead = ev_add_read;
  ac->ev.delRead = ev_del_read;
  ac->ev.addWrite = ev_add_write;
  ac->ev.delWrite = ev_del_write;
  ac->ev.cleanup = ev_cleanup;
  return 0;
}

/* ----------------------------------------------------------- operations */

static aigw_redis_op_t *op_new(int n) {
  size_t size = sizeof(aigw_redis_op_t) + (size_t)n * (sizeof(size_t) + sizeof(redisReply *));
  aigw_redis_op_t *op = aigw_try_malloc(size);
  if (op == NULL) return NULL;
  memset(op, 0, sizeof *op);
  list_init(&op->link);
  op->n = n;
  op->lens = (size_t *)(op + 1);
  op->replies = (redisReply **)(op->lens + n);
  return op;
}

static void op_drop_replies(aigw_redis_op_t *op) {
  for (int i = 0; i < op->received; i++) freeReplyObject(op->replies[i]);
  op->received = 0;
}

static void op_maybe_free(aigw_redis_op_t *op) {
  if (op->r != NULL || op->pending > 0) return;
  op_drop_replies(op);
  aigw_free(op->buf);
  aigw_free(op);
}

/* Moves a reply's contents into a new reply that hiredis will not free. */
static redisReply *steal(redisReply *x) {
  redisReply *mine = aigw_malloc(sizeof *mine);
  *mine = *x;
  x->type = REDIS_REPLY_NIL;
  x->str = NULL;
  x->len = 0;
  x->element = NULL;
  x->elements = 0;
  return mine;
}

/* Unlinks op and runs its callback. last is the final reply (err NULL). */
static void op_finish(aigw_redis_op_t *op, const char *err, redisReply *last) {
  list_remove(&op->link);
  op->r = NULL;
  if (err == NULL) op->replies[op->n - 1] = last;
  op->cb(op->data, err, err ? NULL : op->replies, op->n);
  op_maybe_free(op);
}

/* --------------------------------------------------------------- client */

static void on_timer(uv_timer_t *t);
static void on_resolved(void *data, int status, const struct sockaddr *addr);
static void on_connect(const redisAsyncContext *cac, int status);
static void on_disconnect(const redisAsyncContext *cac, int status);
static void on_reply(redisAsyncContext *ac, void *reply, void *privdata);
static void on_setup_reply(redisAsyncContext *ac, void *reply, void *privdata);

static void enter(aigw_redis_t *r) { r->depth++; }

static void destroy(aigw_redis_t *r);

static void leave(aigw_redis_t *r) {
  if (--r->depth == 0 && r->free_asked) destroy(r);
}

static aigw_redis_op_t *first_op(const link_t *list) { return (aigw_redis_op_t *)list->next; }

/* The timer and the socket keep the loop alive only while a command waits. */
static void update_ref(aigw_redis_t *r) {
  int busy = !list_empty(&r->waiting) || !list_empty(&r->sent);
  if (r->timer_state == 0) {
    if (busy) uv_ref((uv_handle_t *)&r->timer);
    else uv_unref((uv_handle_t *)&r->timer);
  }
  if (r->ac && r->ac->ev.data) {
    ev_t *e = r->ac->ev.data;
    if (busy) uv_ref((uv_handle_t *)&e->poll);
    else uv_unref((uv_handle_t *)&e->poll);
  }
}

/* Sets the timer for the next deadline: the connect deadline while
 * connecting, else the oldest written command's. */
static void arm(aigw_redis_t *r) {
  if (r->timer_state != 0) return;
  uint64_t due;
  if (r->state == ST_RESOLVING || r->state == ST_CONNECTING) due = r->connect_deadline;
  else if (r->state == ST_READY && !list_empty(&r->sent)) due = first_op(&r->sent)->deadline;
  else {
    uv_timer_stop(&r->timer);
    return;
  }
  uint64_t now = uv_now(r->loop);
  uv_timer_start(&r->timer, on_timer, due > now ? due - now : 0, 0);
}

/* Drops the connection (or the attempt) and fails every unfinished
 * operation with msg. hiredis_frees: hiredis is already freeing the
 * context (a disconnect it noticed), so it must not be freed here. */
static void drop(aigw_redis_t *r, const char *msg, int hiredis_frees) {
  char m[256];
  snprintf(m, sizeof m, "%s", msg); /* msg may live in r, which callbacks change */
  redisAsyncContext *ac = r->ac;
  r->ac = NULL;
  r->state = ST_IDLE;
  r->setup_pending = 0;
  if (r->dnsq) {
    aigw_dns_cancel(r->dnsq);
    r->dnsq = NULL;
  }
  if (r->timer_state == 0) uv_timer_stop(&r->timer);
  list_append_all(&r->failing, &r->waiting);
  list_append_all(&r->failing, &r->sent);
  if (ac) {
    ac->data = NULL;
    /* Runs the pending callbacks with NULL now (or, inside a reply
     * callback, when it returns): they find no client. */
    if (!hiredis_frees) redisAsyncFree(ac);
  }
  while (!list_empty(&r->failing)) {
    aigw_redis_op_t *op = first_op(&r->failing);
    op_drop_replies(op);
    op_finish(op, m, NULL);
  }
  update_ref(r);
}

static void connect_failed(aigw_redis_t *r, const char *reason, int hiredis_frees) {
  snprintf(r->reason, sizeof r->reason, "%s", reason);
  r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : BACKOFF_MIN_MS;
  if (r->backoff_ms > BACKOFF_MAX_MS) r->backoff_ms = BACKOFF_MAX_MS;
  r->retry_at = uv_now(r->loop) + r->backoff_ms;
  aigw_log_warn("redis %s:%u: %s", r->url.host, (unsigned)r->url.port, r->reason);
  char msg[200];
  snprintf(msg, sizeof msg, "redis unavailable: %s", r->reason);
  drop(r, msg, hiredis_frees);
}

static void lost(aigw_redis_t *r, const redisAsyncContext *ac, int hiredis_frees) {
  char msg[200];
  const ev_t *e = ac->ev.data;
  const char *why = ac->c.errstr[0] ? ac->c.errstr : "the connection closed";
  if (e && e->refused) why = e->refused; /* the reader's error says "Out of memory" */
  snprintf(msg, sizeof msg, "redis connection lost: %s", why);
  /* Losing an idle connection is news; losing one with commands out, or
   * to a reply refused, more. */
  aigw_log_level_t level = list_empty(&r->waiting) && list_empty(&r->sent) && !(e && e->refused)
                               ? AIGW_LOG_INFO
                               : AIGW_LOG_WARN;
  aigw_log(level, "redis %s:%u: %s", r->url.host, (unsigned)r->url.port, msg + 6);
  drop(r, msg, hiredis_frees);
}

/* Hands op's commands to hiredis (they go out in the next write). */
static int write_op(aigw_redis_t *r, aigw_redis_op_t *op, const char *cmds) {
  const char *p = cmds;
  for (int i = 0; i < op->n; i++) {
    if (redisAsyncFormattedCommand(r->ac, on_reply, op, p, op->lens[i]) != REDIS_OK) return -1;
    op->pending++;
    p += op->lens[i];
  }
  op->deadline = uv_now(r->loop) + r->timeout_ms;
  list_push(&r->sent, &op->link);
  return 0;
}

static void start_connect(aigw_redis_t *r) {
  r->state = ST_RESOLVING;
  r->connect_deadline = uv_now(r->loop) + r->connect_timeout_ms;
  arm(r);
  r->dnsq = NULL;
  /* May call on_resolved before it returns (IP literal, cached name). */
  aigw_dns_query_t *q = aigw_dns_resolve(r->dns, r->url.host, r->url.port, on_resolved, r);
  if (q) r->dnsq = q;
}

static void queue_setup(aigw_redis_t *r) {
  const char *argv[3];
  size_t lens[3];
  int argc = 0;
  if (r->url.password) {
    argv[argc] = "AUTH";
    lens[argc++] = 4;
    if (r->url.user) {
      argv[argc] = r->url.user;
      lens[argc] = strlen(r->url.user);
      argc++;
    }
    argv[argc] = r->url.password;
    lens[argc] = strlen(r->url.password);
    argc++;
    if (redisAsyncCommandArgv(r->ac, on_setup_reply, "AUTH", argc, argv, lens) == REDIS_OK)
      r->setup_pending++;
  }
  if (r->url.db) {
    char db[24];
    argv[0] = "SELECT";
    lens[0] = 6;
    argv[1] = db;
    lens[1] = (size_t)snprintf(db, sizeof db, "%d", r->url.db);
    if (redisAsyncCommandArgv(r->ac, on_setup_reply, "SELECT", 2, argv, lens) == REDIS_OK)
      r->setup_pending++;
  }
}

static void on_resolved(void *data, int status, const struct sockaddr *addr) {
  aigw_redis_t *r = data;
  r->dnsq = NULL;
  enter(r);
  char ip[64] = "";
  if (status == 0) {
    if (addr->sa_family == AF_INET6) uv_ip6_name((const struct sockaddr_in6 *)addr, ip, sizeof ip);
    else uv_ip4_name((const struct sockaddr_in *)addr, ip, sizeof ip);
  }
  if (status != 0 || ip[0] == '\0') {
    connect_failed(r, status == UV_ECANCELED ? "lookup cancelled" : aigw_strerror(AIGW_EDNS), 1);
    leave(r);
    return;
  }
  redisAsyncContext *ac = redisAsyncConnect(ip, r->url.port);
  if (ac == NULL) {
    connect_failed(r, "no memory", 1);
    leave(r);
    return;
  }
  if (ac->err) {
    char why[160];
    snprintf(why, sizeof why, "%s", ac->c.errstr[0] ? ac->c.errstr : "connect failed");
    redisAsyncFree(ac);
    connect_failed(r, why, 1);
    leave(r);
    return;
  }
  if (ev_attach(ac, r->loop) != 0) {
    redisAsyncFree(ac);
    connect_failed(r, "cannot watch the socket", 1);
    leave(r);
    return;
  }
  ac->data = r;
  r->ac = ac;
  r->state = ST_CONNECTING;
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  queue_setup(r);
  update_ref(r);
  leave(r);
}

static void on_connect(const redisAsyncContext *cac, int status) {
  aigw_redis_t *r = cac->data;
  if (r == NULL) return;
  enter(r);
  if (status != REDIS_OK) {
    char why[160];
    snprintf(why, sizeof why, "%s", cac->c.errstr[0] ? cac->c.errstr : "connect failed");
    connect_failed(r, why, 1); /* hiredis frees the context when this returns */
    leave(r);
    return;
  }
  r->state = ST_READY;
  if (r->setup_pending == 0) r->backoff_ms = 0;
  /* Everything queued goes out with AUTH and SELECT, in this write. */
  while (!list_empty(&r->waiting)) {
    aigw_redis_op_t *op = first_op(&r->waiting);
    list_remove(&op->link);
    if (write_op(r, op, op->buf) != 0) {
      list_push(&r->failing, &op->link); /* cannot happen: the context is fine */
      op_finish(op, "redis connection lost: cannot queue the command", NULL);
      continue;
    }
    aigw_free(op->buf);
    op->buf = NULL;
  }
  arm(r);
  update_ref(r);
  leave(r);
}

/* A reply past REPLY_MAX is still arriving: drop the connection from the
 * event glue (not inside a hiredis callback, so it may free the context). */
static void refuse_connection(redisAsyncContext *ac, const char *why) {
  aigw_redis_t *r = ac->data;
  ((ev_t *)ac->ev.data)->refused = why;
  if (r == NULL) return;
  enter(r);
  lost(r, ac, 0);
  leave(r);
}

static void on_disconnect(const redisAsyncContext *cac, int status) {
  aigw_redis_t *r = cac->data;
  if (r == NULL) return;
  enter(r);
  lost(r, cac, 1);
  leave(r);
}

static void on_setup_reply(redisAsyncContext *ac, void *reply, void *privdata) {
  aigw_redis_t *r = ac->data;
  redisReply *x = reply;
  if (r == NULL) return;
  enter(r);
  if (x == NULL) {
    lost(r, ac, 1);
  } else if (x->type == REDIS_REPLY_ERROR) {
    char why[160];
    snprintf(why, sizeof why, "%s failed: %s", (const char *)privdata, x->str ? x->str : "error");
    connect_failed(r, why, 0);
  } else if (--r->setup_pending == 0) {
    r->backoff_ms = 0;
  }
  leave(r);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata) {
  aigw_redis_op_t *op = privdata;
  aigw_redis_t *r = ac->data;
  op->pending--;
  if (op->r == NULL || r == NULL) { /* finished, cancelled, or a dropped context */
    op_maybe_free(op);
    return;
  }
  enter(r);
  if (reply == NULL) {
    lost(r, ac, 1); /* hiredis is freeing the context */
  } else if (op->received < op->n - 1) {
    op->replies[op->received++] = steal(reply);
  } else {
    op_finish(op, NULL, reply);
    update_ref(r);
  }
  leave(r);
}

static void on_timer(uv_timer_t *t) {
  aigw_redis_t *r = t->data;
  uint64_t now = uv_now(r->loop);
  enter(r);
  if (r->state == ST_RESOLVING || r->state == ST_CONNECTING) {
    if (now >= r->connect_deadline) connect_failed(r, "connect timeout", 0);
    else arm(r);
  } else if (r->state == ST_READY && !list_empty(&r->sent)) {
    if (now >= first_op(&r->sent)->deadline) {
      aigw_log_warn("redis %s:%u: a command timed out: dropping the connection", r->url.host,
                    (unsigned)r->url.port);
      drop(r, "timeout", 0);
    } else {
      arm(r);
    }
  }
  leave(r);
}

static uint64_t to_ms(double s) { return (uint64_t)(s * 1000.0 + 0.5); }

aigw_redis_t *aigw_redis_new(uv_loop_t *loop, aigw_dns_t *dns, const char *url,
                             double connect_timeout, double timeout, char *err, size_t errlen) {
  if (!(connect_timeout > 0) || !(timeout > 0) || connect_timeout > 86400 || timeout > 86400) {
    snprintf(err, errlen, "redis timeouts must be more than 0 seconds");
    return NULL;
  }
  if (dns == NULL) {
    snprintf(err, errlen, "no resolver (the worker is stopping)");
    return NULL;
  }
  aigw_redis_t *r = aigw_calloc(1, sizeof *r);
  if (aigw_redis_parse_url(url, &r->url, err, errlen) != 0) {
    aigw_free(r);
    return NULL;
  }
  r->loop = loop;
  r->dns = dns;
  r->url_str = aigw_strdup(url);
  r->connect_timeout_ms = to_ms(connect_timeout);
  r->timeout_ms = to_ms(timeout);
  if (r->connect_timeout_ms == 0) r->connect_timeout_ms = 1;
  if (r->timeout_ms == 0) r->timeout_ms = 1;
  list_init(&r->waiting);
  list_init(&r->sent);
  list_init(&r->failing);
  uv_timer_init(loop, &r->timer);
  r->timer.data = r;
  uv_unref((uv_handle_t *)&r->timer);
  return r;
}

static void free_struct(aigw_redis_t *r) {
  aigw_redis_url_free(&r->url);
  aigw_free(r->url_str);
  aigw_free(r);
}

static void on_timer_closed(uv_handle_t *h) {
  aigw_redis_t *r = h->data;
  r->timer_state = 2;
  if (r->destroyed) free_struct(r);
}

static void destroy(aigw_redis_t *r) {
  if (r->destroyed) return;
  r->destroyed = 1;
  if (r->timer_state == 2) free_struct(r);
  /* else on_timer_closed frees it */
}

void aigw_redis_close(aigw_redis_t *r) {
  if (r->closed) return;
  r->closed = 1;
  enter(r);
  drop(r, "redis connection closed", 0);
  if (r->timer_state == 0) {
    r->timer_state = 1;
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);
  }
  leave(r);
}

void aigw_redis_free(aigw_redis_t *r) {
  if (r == NULL || r->free_asked) return;
  aigw_redis_close(r);
  r->free_asked = 1;
  if (r->depth == 0) destroy(r);
}

aigw_redis_op_t *aigw_redis_send(aigw_redis_t *r, const char *cmds, const size_t *lens, int n,
                                 aigw_redis_cb cb, void *data, const char **err) {
  if (r->closed) {
    *err = "redis connection closed";
    return NULL;
  }
  if (n < 1) {
    *err = "no command";
    return NULL;
  }
  /* No user callback runs in here: when the connection attempt fails at
   * once, no operation is waiting on it yet. */
  if (r->state == ST_IDLE) {
    if (uv_now(r->loop) < r->retry_at) {
      snprintf(r->errmsg, sizeof r->errmsg, "redis unavailable: %s", r->reason);
      *err = r->errmsg;
      return NULL;
    }
    start_connect(r);
    if (r->state == ST_IDLE) {
      snprintf(r->errmsg, sizeof r->errmsg, "redis unavailable: %s", r->reason);
      *err = r->errmsg;
      return NULL;
    }
  }
  aigw_redis_op_t *op = op_new(n);
  if (op == NULL) {
    *err = "no memory";
    return NULL;
  }
  size_t total = 0;
  for (int i = 0; i < n; i++) total += op->lens[i] = lens[i];
  op->cb = cb;
  op->data = data;
  op->r = r;
  if (r->state == ST_READY) {
    if (write_op(r, op, cmds) != 0) {
      op->r = NULL; /* freed when hiredis has called back for what it took */
      op_maybe_free(op);
      *err = "redis connection lost: cannot queue the command";
      return NULL;
    }
    if (!uv_is_active((uv_handle_t *)&r->timer)) arm(r);
  } else {
    op->buf = aigw_try_malloc(total);
    if (op->buf == NULL) {
      op->r = NULL;
      op_maybe_free(op);
      *err = "no memory";
      return NULL;
    }
    memcpy(op->buf, cmds, total);
    list_push(&r->waiting, &op->link);
  }
  update_ref(r);
  return op;
}

void aigw_redis_cancel(aigw_redis_op_t *op) {
  aigw_redis_t *r = op->r;
  if (r == NULL) return;
  list_remove(&op->link);
  op->r = NULL;
  op_drop_replies(op);
  op_maybe_free(op);
  update_ref(r);
}

/* ------------------------------------------------------------ per worker */

aigw_redis_t *aigw_redis_acquire(aigw_loop_t *loop, const char *url, double connect_timeout,
                                 double timeout, char *err, size_t errlen) {
  for (aigw_redis_t *r = loop->redis; r; r = r->next) {
    /* A closed client (worker stopping) is still returned: it refuses. */
    if (strcmp(r->url_str, url) == 0 && r->connect_timeout_ms == to_ms(connect_timeout) &&
        r->timeout_ms == to_ms(timeout)) {
      r->refs++;
      return r;
    }
  }
  aigw_redis_t *r =
      aigw_redis_new(&loop->uv, loop->dns, url, connect_timeout, timeout, err, errlen);
  if (r == NULL) return NULL;
  r->owner = loop;
  r->refs = 1;
  r->next = loop->redis;
  loop->redis = r;
  return r;
}

void aigw_redis_release(aigw_redis_t *r) {
  if (r == NULL || --r->refs > 0) return;
  if (r->owner) {
    for (aigw_redis_t **pp = &r->owner->redis; *pp; pp = &(*pp)->next) {
      if (*pp == r) {
        *pp = r->next;
        break;
      }
    }
  }
  aigw_redis_free(r);
}

void aigw_redis_close_all(aigw_loop_t *loop) {
  /* Closing runs callbacks, which may add or release clients: start over
   * after each one. */
  for (;;) {
    aigw_redis_t *r = loop->redis;
    while (r && r->closed) r = r->next;
    if (r == NULL) break;
    aigw_redis_close(r);
  }
}
