/* pool.c -- keep-alive upstream connections, one pool per worker loop.
 *
 * Idle connections wait in a list per key (scheme, host, port, SNI and TLS
 * settings). A connection keeps one read callback for its whole life (in
 * upstream.c; no epoll changes per request): while idle, a peer that closes
 * or sends stray bytes is noticed there and the connection dropped. A sweep timer closes
 * connections idle for longer than their target allows. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "base/alloc.h"
#include "base/log.h"
#include "upstream/upstream.h"

typedef struct bucket_s {
  char *key;
  aigw_upconn_t *idle; /* most recently parked first */
  int nidle;
  struct bucket_s *next;
} bucket_t;

struct aigw_pool_s {
  aigw_loop_t *loop;
  bucket_t *buckets;
  uv_timer_t sweep;
  uint64_t reuses; /* for tests */
  int open;        /* connections not yet closed */
  int freeing;
};

#define SWEEP_MS 1000

static bucket_t *bucket_for(aigw_pool_t *p, const char *key, int create) {
  for (bucket_t *b = p->buckets; b; b = b->next)
    if (strcmp(b->key, key) == 0) return b;
  if (!create) return NULL;
  bucket_t *b = aigw_calloc(1, sizeof *b);
  b->key = aigw_strdup(key);
  b->next = p->buckets;
  p->buckets = b;
  return b;
}

static void unlink_idle(aigw_upconn_t *uc) {
  bucket_t *b = bucket_for(uc->pool, uc->key, 0);
  if (b == NULL) return;
  if (uc->prev) uc->prev->next = uc->next;
  else b->idle = uc->next;
  if (uc->next) uc->next->prev = uc->prev;
  uc->next = uc->prev = NULL;
  b->nidle--;
}

static void maybe_finish_free(aigw_pool_t *p);

static void on_closed(uv_handle_t *h) {
  aigw_upconn_t *uc = h->data;
  aigw_pool_t *p = uc->pool;
  if (uc->tls) aigw_tls_free(uc->tls);
  aigw_free(uc->key);
  aigw_free(uc);
  p->open--;
  maybe_finish_free(p);
}

aigw_upconn_t *aigw_upconn_new(aigw_pool_t *p, const char *key) {
  aigw_upconn_t *uc = aigw_calloc(1, sizeof *uc);
  uc->pool = p;
  uc->key = aigw_strdup(key);
  uv_tcp_init(&p->loop->uv, &uc->tcp);
  uc->tcp.data = uc;
  p->open++;
  return uc;
}

void aigw_upconn_close(aigw_upconn_t *uc) {
  if (uc->closing) return;
  uc->closing = 1;
  uc->user = NULL;
  uv_close((uv_handle_t *)&uc->tcp, on_closed);
}

void aigw__pool_idle_broken(aigw_upconn_t *uc) {
  /* EOF, an error, or bytes nobody asked for: the connection is unusable. */
  unlink_idle(uc);
  aigw_upconn_close(uc);
}

static void on_sweep(uv_timer_t *t) {
  aigw_pool_t *p = t->data;
  uint64_t now = uv_now(&p->loop->uv);
  for (bucket_t *b = p->buckets; b; b = b->next) {
    aigw_upconn_t *uc = b->idle, *next;
    for (; uc; uc = next) {
      next = uc->next;
      if (uc->expires <= now) {
        unlink_idle(uc);
        aigw_upconn_close(uc);
      }
    }
  }
}

aigw_pool_t *aigw_pool_new(aigw_loop_t *loop) {
  aigw_pool_t *p = aigw_calloc(1, sizeof *p);
  p->loop = loop;
  uv_timer_init(&loop->uv, &p->sweep);
  p->sweep.data = p;
  uv_timer_start(&p->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
  uv_unref((uv_handle_t *)&p->sweep);
  p->open = 1; /* the sweep timer */
  return p;
}

static void on_sweep_closed(uv_handle_t *h) {
  aigw_pool_t *p = h->data;
  p->open--;
  maybe_finish_free(p);
}

static void maybe_finish_free(aigw_pool_t *p) {
  if (!p->freeing || p->open > 0) return;
  bucket_t *b = p->buckets, *next;
  for (; b; b = next) {
    next = b->next;
    aigw_free(b->key);
    aigw_free(b);
  }
  aigw_free(p);
}

void aigw_pool_free(aigw_pool_t *p) {
  p->freeing = 1;
  for (bucket_t *b = p->buckets; b; b = b->next) {
    while (b->idle) {
      aigw_upconn_t *uc = b->idle;
      unlink_idle(uc);
      aigw_upconn_close(uc);
    }
  }
  uv_close((uv_handle_t *)&p->sweep, on_sweep_closed);
}

/* 1 when the kernel holds bytes or an EOF for an idle connection. Its read
 * callback would see them, but maybe not before the connection is handed
 * out again within the same loop iteration: the bytes of an earlier
 * response must never reach the next request. */
static int has_input(aigw_upconn_t *uc) {
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&uc->tcp, &fd) != 0) return 1;
  char c;
  ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
}

aigw_upconn_t *aigw_pool_acquire(aigw_pool_t *p, const char *key) {
  bucket_t *b = bucket_for(p, key, 0);
  while (b && b->idle) {
    aigw_upconn_t *uc = b->idle;
    unlink_idle(uc);
    if (has_input(uc)) {
      aigw_upconn_close(uc);
      continue;
    }
    p->reuses++;
    return uc;
  }
  return NULL;
}

void aigw_pool_release(aigw_pool_t *p, aigw_upconn_t *uc, int max_idle, uint64_t idle_ms) {
  uc->user = NULL;
  if (p->freeing || p->loop->draining || max_idle <= 0 || idle_ms == 0) {
    aigw_upconn_close(uc);
    return;
  }
  bucket_t *b = bucket_for(p, uc->key, 1);
  if (b->nidle >= max_idle) {
    aigw_upconn_close(uc);
    return;
  }
  uc->expires = uv_now(&p->loop->uv) + idle_ms;
  uc->prev = NULL;
  uc->next = b->idle;
  if (b->idle) b->idle->prev = uc;
  b->idle = uc;
  b->nidle++;
}

uint64_t aigw_pool_reuses(const aigw_pool_t *p) { return p->reuses; }
