/* dns.c -- asynchronous name resolution with a per-worker TTL cache (see dns.h).
 *
 * Ownership:
 *   aigw_dns_t owns its entries (hash table + LRU list, at most MAX_NAMES
 *   idle ones). An entry owns the queries waiting on it and points to its
 *   in-flight lookup, if any.
 *   A lookup (the uv_getaddrinfo_t) is owned by libuv from uv_getaddrinfo
 *   until on_getaddrinfo, which always frees it. aigw_dns_free orphans
 *   lookups (lookup->entry = NULL) instead of freeing them, so the cache can
 *   go at once while libuv still holds the request.
 *   A query belongs to the caller only as a cancel handle; it is freed by
 *   aigw_dns_cancel or just before its callback runs.
 *
 * Re-entrancy: callbacks may call aigw_dns_resolve, aigw_dns_cancel (on any
 * query) or aigw_dns_free. Waiters are moved off their entry onto a list on
 * the stack before their callbacks run; dns->delivering points at it so that
 * aigw_dns_free can cancel the rest, and the aigw_dns_t itself is then freed
 * by the delivery loop once the callback returns. */
#include "loop/dns.h"

#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>

#include "base/alloc.h"
#include "base/errors.h"
#include "base/log.h"

#define MAX_NAMES 1024      /* idle cache entries kept */
#define NBUCKETS 1024       /* power of two */
#define MAX_HOST 255        /* longest host name accepted */
#define NEG_TTL_MAX_MS 5000 /* failures are cached min(ttl, this) */

/* A circular doubly linked list with a sentinel head (libuv's QUEUE idea):
 * a node unlinks itself without knowing which list holds it. */
typedef struct node_s {
  struct node_s *next, *prev;
} node_t;

static void list_init(node_t *h) { h->next = h->prev = h; }
static int list_empty(const node_t *h) { return h->next == h; }

static void list_push(node_t *h, node_t *n) {
  n->next = h;
  n->prev = h->prev;
  h->prev->next = n;
  h->prev = n;
}

static void list_remove(node_t *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->next = n->prev = n;
}

/* Moves every node of `from` onto the empty list `to`. */
static void list_move(node_t *from, node_t *to) {
  if (list_empty(from)) {
    list_init(to);
    return;
  }
  to->next = from->next;
  to->prev = from->prev;
  to->next->prev = to;
  to->prev->next = to;
  list_init(from);
}

#define CONTAINER_OF(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))

typedef struct entry_s entry_t;

typedef struct {
  uv_getaddrinfo_t req;
  entry_t *entry; /* NULL once orphaned by aigw_dns_free */
} lookup_t;

struct entry_s {
  aigw_dns_t *dns;
  entry_t *hnext;               /* hash chain */
  node_t lru;                   /* in dns->lru, least recently used first */
  node_t waiters;               /* aigw_dns_query_t.node, only while lookup */
  lookup_t *lookup;             /* in-flight getaddrinfo, or NULL */
  uint64_t expires;             /* uv_now() ms; fresh while now < expires */
  int status;                   /* 0 or AIGW_EDNS; meaningful once expires set */
  struct sockaddr_storage addr; /* port 0; valid when status == 0 */
  uint32_t hash;
  char host[]; /* lower-cased */
};

struct aigw_dns_query_s {
  node_t node; /* in entry->waiters or a delivery list */
  aigw_dns_cb cb;
  void *data;
  uint16_t port;
};

struct aigw_dns_s {
  uv_loop_t *loop;
  uint64_t ttl_ms, neg_ttl_ms;
  unsigned lookups;
  unsigned count;
  int closing;
  node_t *delivering; /* waiters whose callbacks on_getaddrinfo is running */
  node_t lru;
  entry_t *buckets[NBUCKETS];
};

aigw_dns_t *aigw_dns_new(uv_loop_t *loop, double ttl) {
  aigw_dns_t *dns = aigw_calloc(1, sizeof *dns);
  dns->loop = loop;
  /* !(ttl > 0) also catches NaN; a day is long enough for any cache. */
  if (!(ttl > 0)) ttl = 0;
  if (ttl > 86400) ttl = 86400;
  dns->ttl_ms = (uint64_t)(ttl * 1000);
  dns->neg_ttl_ms = dns->ttl_ms < NEG_TTL_MAX_MS ? dns->ttl_ms : NEG_TTL_MAX_MS;
  list_init(&dns->lru);
  return dns;
}

unsigned aigw_dns_lookups(const aigw_dns_t *dns) { return dns->lookups; }

/* ---- answers ---------------------------------------------------------- */

static void answer(aigw_dns_cb cb, void *data, int status, const struct sockaddr_storage *ss,
                   uint16_t port) {
  if (status != 0) {
    cb(data, status, NULL);
    return;
  }
  struct sockaddr_storage a = *ss;
  if (a.ss_family == AF_INET) ((struct sockaddr_in *)&a)->sin_port = htons(port);
  else ((struct sockaddr_in6 *)&a)->sin6_port = htons(port);
  cb(data, 0, (const struct sockaddr *)&a);
}

/* Frees q and runs its callback (in that order: the handle is dead once the
 * callback starts, so cancelling it from there cannot double-free). */
static void finish(aigw_dns_query_t *q, int status, const struct sockaddr_storage *ss) {
  aigw_dns_cb cb = q->cb;
  void *data = q->data;
  uint16_t port = q->port;
  list_remove(&q->node);
  aigw_free(q);
  answer(cb, data, status, ss, port);
}

/* Runs every callback on list h with `status`. Callbacks may cancel other
 * queries on h, so always take the current head. */
static void drain(node_t *h, int status, const struct sockaddr_storage *ss) {
  while (!list_empty(h)) finish(CONTAINER_OF(h->next, aigw_dns_query_t, node), status, ss);
}

/* ---- literals ----------------------------------------------------------- */

enum { NOT_LITERAL, LITERAL, BAD_HOST };

static int parse_literal(const char *host, size_t len, struct sockaddr_storage *ss) {
  char buf[MAX_HOST + 1];
  memset(ss, 0, sizeof *ss);
  if (len == 0 || len > MAX_HOST) return BAD_HOST;
  if (host[0] == '[') {
    if (len < 3 || host[len - 1] != ']') return BAD_HOST;
    memcpy(buf, host + 1, len - 2);
    buf[len - 2] = '\0';
    return uv_ip6_addr(buf, 0, (struct sockaddr_in6 *)ss) == 0 ? LITERAL : BAD_HOST;
  }
  if (uv_ip4_addr(host, 0, (struct sockaddr_in *)ss) == 0) return LITERAL;
  if (strchr(host, ':') != NULL && uv_ip6_addr(host, 0, (struct sockaddr_in6 *)ss) == 0)
    return LITERAL;
  memset(ss, 0, sizeof *ss);
  return NOT_LITERAL;
}

/* ---- cache -------------------------------------------------------------- */

/* Lower-cases host into key (MAX_HOST + 1 bytes) and returns its FNV-1a hash. */
static uint32_t make_key(const char *host, size_t len, char *key) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++) {
    char c = host[i];
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    key[i] = c;
    h = (h ^ (unsigned char)c) * 16777619u;
  }
  key[len] = '\0';
  return h;
}

static entry_t *find(aigw_dns_t *dns, const char *key, uint32_t hash) {
  for (entry_t *e = dns->buckets[hash & (NBUCKETS - 1)]; e != NULL; e = e->hnext)
    if (e->hash == hash && strcmp(e->host, key) == 0) return e;
  return NULL;
}

/* Unlinks and frees an entry. Its lookup, if any, must already be orphaned
 * and its waiters gone. */
static void destroy(aigw_dns_t *dns, entry_t *e) {
  entry_t **pp = &dns->buckets[e->hash & (NBUCKETS - 1)];
  while (*pp != e) pp = &(*pp)->hnext;
  *pp = e->hnext;
  list_remove(&e->lru);
  dns->count--;
  aigw_free(e);
}

/* Makes room for one more name: drops every expired idle entry, else the
 * least recently used idle one. Entries with a lookup in flight hold
 * waiters and are never evicted, so the cache exceeds MAX_NAMES only while
 * more names than that are being looked up at once. */
static void evict(aigw_dns_t *dns) {
  uint64_t now = uv_now(dns->loop);
  node_t *n, *next;
  for (n = dns->lru.next; n != &dns->lru; n = next) {
    entry_t *e = CONTAINER_OF(n, entry_t, lru);
    next = n->next;
    if (e->lookup == NULL && now >= e->expires) destroy(dns, e);
  }
  if (dns->count < MAX_NAMES) return;
  for (n = dns->lru.next; n != &dns->lru; n = n->next) {
    entry_t *e = CONTAINER_OF(n, entry_t, lru);
    if (e->lookup == NULL) {
      destroy(dns, e);
      return;
    }
  }
}

static entry_t *create(aigw_dns_t *dns, const char *key, size_t len, uint32_t hash) {
  if (dns->count >= MAX_NAMES) evict(dns);
  entry_t *e = aigw_calloc(1, sizeof *e + len + 1);
  memcpy(e->host, key, len + 1);
  e->dns = dns;
  e->hash = hash;
  list_init(&e->waiters);
  list_push(&dns->lru, &e->lru);
  e->hnext = dns->buckets[hash & (NBUCKETS - 1)];
  dns->buckets[hash & (NBUCKETS - 1)] = e;
  dns->count++;
  return e;
}

/* ---- lookups ------------------------------------------------------------ */

static void on_getaddrinfo(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  lookup_t *lk = CONTAINER_OF(req, lookup_t, req);
  entry_t *e = lk->entry;
  aigw_free(lk);
  if (e == NULL) { /* orphaned by aigw_dns_free; usually UV_EAI_CANCELED */
    uv_freeaddrinfo(res);
    return;
  }
  aigw_dns_t *dns = e->dns;
  e->lookup = NULL;

  const struct addrinfo *v4 = NULL, *v6 = NULL;
  for (const struct addrinfo *ai = status == 0 ? res : NULL; ai != NULL; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET && v4 == NULL && ai->ai_addrlen >= sizeof(struct sockaddr_in))
      v4 = ai;
    else if (ai->ai_family == AF_INET6 && v6 == NULL &&
             ai->ai_addrlen >= sizeof(struct sockaddr_in6))
      v6 = ai;
  }
  const struct addrinfo *pick = v4 != NULL ? v4 : v6;
  uint64_t now = uv_now(dns->loop);
  memset(&e->addr, 0, sizeof e->addr);
  if (pick != NULL) {
    memcpy(&e->addr, pick->ai_addr,
           pick->ai_addrlen < sizeof e->addr ? pick->ai_addrlen : sizeof e->addr);
    if (pick->ai_family == AF_INET) ((struct sockaddr_in *)&e->addr)->sin_port = 0;
    else ((struct sockaddr_in6 *)&e->addr)->sin6_port = 0;
    e->status = 0;
    e->expires = now + dns->ttl_ms;
  } else {
    aigw_log_warn("dns: cannot resolve %s: %s", e->host,
                  status != 0 ? uv_strerror(status) : "no IPv4 or IPv6 address");
    e->status = AIGW_EDNS;
    e->expires = now + dns->neg_ttl_ms;
  }
  uv_freeaddrinfo(res);

  /* From here on e may be evicted or freed by a callback: use copies. */
  struct sockaddr_storage ss = e->addr;
  int st = e->status;
  node_t waiters;
  list_move(&e->waiters, &waiters);
  list_remove(&e->lru);
  list_push(&dns->lru, &e->lru);

  dns->delivering = &waiters;
  drain(&waiters, st, &ss);
  if (dns->closing) /* aigw_dns_free ran inside a callback and left us dns */
    aigw_free(dns);
  else dns->delivering = NULL;
}

static int start_lookup(aigw_dns_t *dns, entry_t *e) {
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = 0; /* no AI_ADDRCONFIG: it hides loopback in sandboxes */
  lookup_t *lk = aigw_malloc(sizeof *lk);
  lk->entry = e;
  int rc = uv_getaddrinfo(dns->loop, &lk->req, on_getaddrinfo, e->host, NULL, &hints);
  if (rc != 0) {
    aigw_free(lk);
    return rc;
  }
  e->lookup = lk;
  dns->lookups++;
  return 0;
}

/* ---- public ------------------------------------------------------------- */

aigw_dns_query_t *aigw_dns_resolve(aigw_dns_t *dns, const char *host, uint16_t port, aigw_dns_cb cb,
                                   void *data) {
  struct sockaddr_storage ss;
  if (dns->closing) {
    cb(data, UV_ECANCELED, NULL);
    return NULL;
  }
  size_t len = host != NULL ? strlen(host) : 0;
  switch (parse_literal(host, len, &ss)) {
    case LITERAL: answer(cb, data, 0, &ss, port); return NULL;
    case BAD_HOST:
      aigw_log_warn("dns: cannot resolve %.*s: invalid host name", (int)(len > 64 ? 64 : len),
                    host != NULL ? host : "");
      cb(data, AIGW_EDNS, NULL);
      return NULL;
    default: break;
  }

  char key[MAX_HOST + 1];
  uint32_t hash = make_key(host, len, key);
  entry_t *e = find(dns, key, hash);
  if (e == NULL) e = create(dns, key, len, hash);
  list_remove(&e->lru);
  list_push(&dns->lru, &e->lru);

  if (e->lookup == NULL && uv_now(dns->loop) < e->expires) {
    if (e->status != 0) aigw_log_debug("dns: %s: cached failure", e->host);
    ss = e->addr;
    answer(cb, data, e->status, &ss, port);
    return NULL;
  }
  if (e->lookup == NULL) {
    int rc = start_lookup(dns, e);
    if (rc != 0) {
      aigw_log_warn("dns: cannot resolve %s: %s", e->host, uv_strerror(rc));
      cb(data, AIGW_EDNS, NULL);
      return NULL;
    }
  }
  aigw_dns_query_t *q = aigw_malloc(sizeof *q);
  q->cb = cb;
  q->data = data;
  q->port = port;
  list_push(&e->waiters, &q->node);
  return q;
}

void aigw_dns_cancel(aigw_dns_query_t *q) {
  if (q == NULL) return;
  list_remove(&q->node);
  aigw_free(q);
}

void aigw_dns_free(aigw_dns_t *dns) {
  if (dns == NULL || dns->closing) return;
  dns->closing = 1;
  node_t *n;

  /* Orphan in-flight lookups first: on_getaddrinfo frees them. uv_cancel
   * fails harmlessly (UV_EBUSY) when the lookup is already running. */
  for (n = dns->lru.next; n != &dns->lru; n = n->next) {
    entry_t *e = CONTAINER_OF(n, entry_t, lru);
    if (e->lookup != NULL) {
      e->lookup->entry = NULL;
      uv_cancel((uv_req_t *)&e->lookup->req);
      e->lookup = NULL;
    }
  }

  /* Callbacks may cancel queries anywhere, resolve (answered UV_ECANCELED
   * without touching the cache) or call us again (no-op), so the set of
   * entries is stable here. */
  if (dns->delivering != NULL) drain(dns->delivering, UV_ECANCELED, NULL);
  for (n = dns->lru.next; n != &dns->lru; n = n->next)
    drain(&CONTAINER_OF(n, entry_t, lru)->waiters, UV_ECANCELED, NULL);

  while (!list_empty(&dns->lru)) destroy(dns, CONTAINER_OF(dns->lru.next, entry_t, lru));
  if (dns->delivering == NULL) aigw_free(dns); /* else on_getaddrinfo frees it */
}
