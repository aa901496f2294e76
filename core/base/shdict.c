/* shdict.c -- shared dictionaries (see shdict.h): named zones of key/value
 * pairs shared by the worker threads of one process.
 *
 * A zone is plain heap memory behind one mutex (a spinlock measured a few ns
 * faster uncontended but 2-3x slower once threads outnumber cores, and a
 * holder may be copying a large value). Each entry is one allocation
 * (header, key bytes, string value bytes) linked into two lists: a chain of a
 * power-of-two bucket array, sized from the capacity and never resized, and a
 * doubly-linked LRU list whose head is the most recently used entry. Keys are
 * hashed with SipHash-1-3 under a random per-zone key, so clients who choose
 * keys (rate-limit and cache keys come from requests) cannot flood a chain.
 *
 * `used` is the sum of malloc_usable_size() of the entries: header, key and
 * value, plus the allocator's rounding, i.e. what the entries really hold.
 * The bucket array is the zone's fixed overhead, outside that count.
 * Expired entries are dropped lazily when touched; when an entry would take
 * `used` past the capacity, expired entries near the LRU tail go first, then
 * the least recently used ones. Each entry is evicted at most once, so the
 * cost of eviction is paid back by the insertions that filled the zone.
 *
 * The zone owns its entries; get copies a string value out into a buffer
 * owned by the calling thread, so no pointer into a zone ever escapes its
 * lock. The registry (name -> zone) has its own mutex. */
#include "base/shdict.h"

#include "base/alloc.h"
#include "base/errors.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define KEY_MAX 65535
#define ZONE_NAME_MAX 64
#define MIN_CAPACITY 4096
/* One bucket per this many bytes of capacity: a load factor near 1 for
 * typical entries and at most ~2 for the smallest ones. */
#define BYTES_PER_BUCKET 128
#define MIN_BUCKETS 16
#define MAX_BUCKETS ((size_t)1 << 26)
/* Entries looked at from the LRU tail for expired ones before a live entry
 * is evicted. */
#define EXPIRED_SCAN 64
/* A thread's get buffer larger than this is given back once smaller values
 * are read again. */
#define TBUF_KEEP (64 * 1024)
/* Longest TTL we represent (about 31,700 years); longer ones are clamped. */
#define TTL_MAX_MS 1e15

typedef struct lru_s lru_t;
struct lru_s {
  lru_t *prev, *next;
};

typedef struct entry_s entry_t;
struct entry_s {
  lru_t lru;        /* first member: an lru_t * is its entry_t * */
  entry_t *hnext;   /* bucket chain */
  uint64_t expires; /* CLOCK_MONOTONIC_COARSE ms; 0 = never */
  size_t size;      /* malloc_usable_size(): what this entry adds to `used` */
  union {
    double num; /* AIGW_SHDICT_NUMBER */
    size_t len; /* AIGW_SHDICT_STRING: value bytes after the key */
  } v;
  uint32_t hash; /* low bits pick the bucket, all of them reject cheaply */
  uint16_t klen;
  uint8_t type;
  char data[]; /* key, then a string value */
};

#define ENTRY_HDR offsetof(entry_t, data)

struct aigw_shdict_s {
  pthread_mutex_t lock;
  entry_t **buckets;
  size_t mask;
  lru_t lru; /* sentinel: lru.next is the most, lru.prev the least recent */
  size_t capacity;
  size_t used;
  uint64_t seed[2];
  aigw_shdict_t *next_zone; /* registry list */
  char name[ZONE_NAME_MAX + 1];
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static aigw_shdict_t *registry;

/* The calling thread's copy of the last string value it read. */
static _Thread_local struct {
  char *p;
  size_t cap;
} tbuf;

/* ---- hashing: SipHash-1-3 (the variant Rust and Python use for tables) ---- */

static inline uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

static inline void sipround(uint64_t v[4]) {
  v[0] += v[1];
  v[1] = rotl(v[1], 13);
  v[1] ^= v[0];
  v[0] = rotl(v[0], 32);
  v[2] += v[3];
  v[3] = rotl(v[3], 16);
  v[3] ^= v[2];
  v[0] += v[3];
  v[3] = rotl(v[3], 21);
  v[3] ^= v[0];
  v[2] += v[1];
  v[1] = rotl(v[1], 17);
  v[1] ^= v[2];
  v[2] = rotl(v[2], 32);
}

static uint64_t siphash13(const uint64_t k[2], const unsigned char *in, size_t len) {
  uint64_t v[4] = {0x736f6d6570736575ULL ^ k[0], 0x646f72616e646f6dULL ^ k[1],
                   0x6c7967656e657261ULL ^ k[0], 0x7465646279746573ULL ^ k[1]};
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t m;
    memcpy(&m, in + i, 8);
    v[3] ^= m;
    sipround(v);
    v[0] ^= m;
  }
  uint64_t b = (uint64_t)len << 56;
  for (int s = 0; i < len; i++, s += 8) b |= (uint64_t)in[i] << s;
  v[3] ^= b;
  sipround(v);
  v[0] ^= b;
  v[2] ^= 0xff;
  sipround(v);
  sipround(v);
  sipround(v);
  return v[0] ^ v[1] ^ v[2] ^ v[3];
}

static inline uint32_t hash_key(const aigw_shdict_t *d, const char *key, size_t klen) {
  uint64_t h = siphash13(d->seed, (const unsigned char *)key, klen);
  return (uint32_t)(h ^ (h >> 32));
}

/* ---- time ---- */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Expiry time for a TTL in seconds; 0 (never) unless ttl > 0. A positive TTL
 * lasts at least 1 ms, so it never reads as "no expiry". */
static uint64_t expires_at(double ttl) {
  if (!(ttl > 0)) return 0;
  double ms = ttl * 1000.0;
  if (ms > TTL_MAX_MS) ms = TTL_MAX_MS;
  uint64_t n = (uint64_t)ms;
  if ((double)n < ms) n++;
  return now_ms() + n;
}

/* *now is read from the clock on first need: entries without a TTL never pay
 * for it. */
static inline int is_expired(const entry_t *e, uint64_t *now) {
  if (e->expires == 0) return 0;
  if (*now == 0) *now = now_ms();
  return e->expires <= *now;
}

/* ---- entries (all under the zone lock) ---- */

static inline void lru_unlink(lru_t *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
}

static inline void lru_push_head(aigw_shdict_t *d, lru_t *n) {
  n->prev = &d->lru;
  n->next = d->lru.next;
  d->lru.next->prev = n;
  d->lru.next = n;
}

static inline void touch(aigw_shdict_t *d, entry_t *e) {
  if (d->lru.next == &e->lru) return;
  lru_unlink(&e->lru);
  lru_push_head(d, &e->lru);
}

static inline entry_t *find(aigw_shdict_t *d, uint32_t h, const char *key, size_t klen) {
  for (entry_t *e = d->buckets[h & d->mask]; e != NULL; e = e->hnext)
    if (e->hash == h && e->klen == klen && memcmp(e->data, key, klen) == 0) return e;
  return NULL;
}

static void remove_entry(aigw_shdict_t *d, entry_t *e) {
  entry_t **pp = &d->buckets[e->hash & d->mask];
  while (*pp != e) pp = &(*pp)->hnext;
  *pp = e->hnext;
  lru_unlink(&e->lru);
  d->used -= e->size;
  aigw_free(e);
}

static void link_entry(aigw_shdict_t *d, entry_t *e) {
  entry_t **b = &d->buckets[e->hash & d->mask];
  e->hnext = *b;
  *b = e;
  lru_push_head(d, &e->lru);
  d->used += e->size;
}

/* Evicts until `need` more bytes fit: first expired entries among the
 * EXPIRED_SCAN least recently used, then the least recently used. The caller
 * checked need <= capacity, so this always succeeds. */
static void make_room(aigw_shdict_t *d, size_t need, uint64_t *now) {
  if (d->used + need <= d->capacity) return;
  lru_t *n = d->lru.prev;
  for (int i = 0; i < EXPIRED_SCAN && n != &d->lru && d->used + need > d->capacity; i++) {
    lru_t *prev = n->prev;
    entry_t *e = (entry_t *)n;
    if (is_expired(e, now)) remove_entry(d, e);
    n = prev;
  }
  while (d->used + need > d->capacity) remove_entry(d, (entry_t *)d->lru.prev);
}

static inline void set_value(entry_t *e, int type, const char *str, size_t len, double num,
                             uint64_t expires) {
  e->type = (uint8_t)type;
  e->expires = expires;
  if (type == AIGW_SHDICT_NUMBER) {
    e->v.num = num;
  } else {
    e->v.len = len;
    if (len) memcpy(e->data + e->klen, str, len);
  }
}

/* Stores a value under a key whose entry is `old` (live or expired) or absent
 * (NULL). The old entry is reused in place when the value fits it without
 * much slack; otherwise a new entry replaces it, and nothing changes unless
 * the allocation succeeds. */
static int store(aigw_shdict_t *d, entry_t *old, uint32_t h, const char *key, size_t klen, int type,
                 const char *str, size_t len, double num, uint64_t expires, uint64_t *now) {
  size_t vlen = type == AIGW_SHDICT_STRING ? len : 0;
  if (old != NULL) {
    size_t room = old->size - ENTRY_HDR - old->klen;
    if (vlen <= room && room - vlen <= vlen / 4 + 32) {
      set_value(old, type, str, len, num, expires);
      touch(d, old);
      return 0;
    }
  }
  entry_t *e = aigw_try_malloc(ENTRY_HDR + klen + vlen);
  if (e == NULL) return AIGW_ENOSPACE;
  e->size = malloc_usable_size(e);
  if (e->size > d->capacity) { /* fitted before the allocator rounded it up */
    aigw_free(e);
    return AIGW_ETOOBIG;
  }
  e->hash = h;
  e->klen = (uint16_t)klen;
  if (klen) memcpy(e->data, key, klen);
  set_value(e, type, str, len, num, expires);
  if (old != NULL) remove_entry(d, old);
  make_room(d, e->size, now);
  link_entry(d, e);
  return 0;
}

/* Whether an entry for this key and value could ever fit the zone. */
static int fits(const aigw_shdict_t *d, size_t klen, int type, size_t len) {
  size_t vlen = type == AIGW_SHDICT_STRING ? len : 0;
  if (klen > KEY_MAX || vlen > d->capacity) return 0;
  return ENTRY_HDR + klen + vlen <= d->capacity;
}

static void drop_all(aigw_shdict_t *d) {
  lru_t *n = d->lru.next;
  while (n != &d->lru) {
    lru_t *next = n->next;
    aigw_free(n);
    n = next;
  }
  d->lru.next = d->lru.prev = &d->lru;
  memset(d->buckets, 0, (d->mask + 1) * sizeof *d->buckets);
  d->used = 0;
}

/* ---- the thread's get buffer ---- */

/* A buffer of at least n bytes, or NULL if it cannot grow. A buffer grown
 * past TBUF_KEEP shrinks back once a smaller value is read. */
static char *tbuf_reserve(size_t n) {
  if (n <= tbuf.cap && (tbuf.cap <= TBUF_KEEP || n > TBUF_KEEP)) return tbuf.p;
  size_t cap = 256;
  while (cap < n && cap <= SIZE_MAX / 2) cap *= 2;
  if (cap < n) cap = n;
  char *p = aigw_try_malloc(cap);
  if (p == NULL) return NULL;
  aigw_free(tbuf.p);
  tbuf.p = p;
  tbuf.cap = cap;
  return p;
}

void aigw_shdict_thread_cleanup(void) {
  aigw_free(tbuf.p);
  tbuf.p = NULL;
  tbuf.cap = 0;
}

/* ---- zones and the registry ---- */

static int valid_name(const char *name) {
  size_t n = 0;
  for (; name[n]; n++) {
    char c = name[n];
    if (n == ZONE_NAME_MAX) return 0;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-'))
      return 0;
  }
  return n > 0;
}

static void random_seed(uint64_t seed[2]) {
  size_t got = 0;
  while (got < 2 * sizeof(uint64_t)) {
    ssize_t n = getrandom((char *)seed + got, 2 * sizeof(uint64_t) - got, 0);
    if (n > 0) {
      got += (size_t)n;
    } else if (n < 0 && errno != EINTR) {
      break;
    }
  }
  if (got < 2 * sizeof(uint64_t)) { /* no getrandom: weaker, still per zone */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed[0] ^= (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)seed;
    seed[1] ^= (uint64_t)ts.tv_sec * 0xbf58476d1ce4e5b9ULL ^ now_ms();
  }
}

aigw_shdict_t *aigw_shdict_new(const char *name, size_t capacity, const char **err) {
  const char *dummy;
  if (err == NULL) err = &dummy;
  if (name == NULL || !valid_name(name)) {
    *err = "invalid zone name (1-64 characters of A-Z a-z 0-9 _ -)";
    return NULL;
  }
  if (capacity < MIN_CAPACITY) {
    *err = "zone size too small (minimum 4096 bytes)";
    return NULL;
  }
  if (capacity > SIZE_MAX / 4) {
    *err = "zone size too large";
    return NULL;
  }

  size_t nb = MIN_BUCKETS;
  while (nb < capacity / BYTES_PER_BUCKET && nb < MAX_BUCKETS) nb *= 2;

  aigw_shdict_t *d = aigw_calloc(1, sizeof *d);
  d->buckets = aigw_calloc(nb, sizeof *d->buckets);
  d->mask = nb - 1;
  d->lru.next = d->lru.prev = &d->lru;
  d->capacity = capacity;
  random_seed(d->seed);
  strcpy(d->name, name);
  pthread_mutex_init(&d->lock, NULL);

  pthread_mutex_lock(&registry_lock);
  for (aigw_shdict_t *z = registry; z != NULL; z = z->next_zone) {
    if (strcmp(z->name, name) == 0) {
      pthread_mutex_unlock(&registry_lock);
      pthread_mutex_destroy(&d->lock);
      aigw_free(d->buckets);
      aigw_free(d);
      *err = "duplicate zone name";
      return NULL;
    }
  }
  d->next_zone = registry;
  registry = d;
  pthread_mutex_unlock(&registry_lock);
  return d;
}

static void zone_free(aigw_shdict_t *d) {
  drop_all(d);
  pthread_mutex_destroy(&d->lock);
  aigw_free(d->buckets);
  aigw_free(d);
}

void aigw_shdict_free(aigw_shdict_t *d) {
  if (d == NULL) return;
  pthread_mutex_lock(&registry_lock);
  for (aigw_shdict_t **pp = &registry; *pp != NULL; pp = &(*pp)->next_zone) {
    if (*pp == d) {
      *pp = d->next_zone;
      break;
    }
  }
  pthread_mutex_unlock(&registry_lock);
  zone_free(d);
}

void aigw_shdict_free_all(void) {
  pthread_mutex_lock(&registry_lock);
  aigw_shdict_t *d = registry;
  registry = NULL;
  pthread_mutex_unlock(&registry_lock);
  while (d != NULL) {
    aigw_shdict_t *next = d->next_zone;
    zone_free(d);
    d = next;
  }
  aigw_shdict_thread_cleanup();
}

aigw_shdict_t *aigw_shdict_lookup(const char *name) {
  if (name == NULL) return NULL;
  pthread_mutex_lock(&registry_lock);
  aigw_shdict_t *d = registry;
  while (d != NULL && strcmp(d->name, name) != 0) d = d->next_zone;
  pthread_mutex_unlock(&registry_lock);
  return d;
}

const char *aigw_shdict_name(const aigw_shdict_t *d) { return d->name; }

size_t aigw_shdict_capacity(const aigw_shdict_t *d) { return d->capacity; }

size_t aigw_shdict_used(const aigw_shdict_t *d) {
  aigw_shdict_t *m = (aigw_shdict_t *)d; /* the lock is not part of the value */
  pthread_mutex_lock(&m->lock);
  size_t used = m->used;
  pthread_mutex_unlock(&m->lock);
  return used;
}

/* ---- operations ---- */

int aigw_shdict_get(aigw_shdict_t *d, const char *key, size_t klen, int *type, const char **str,
                    size_t *len, double *num) {
  *type = AIGW_SHDICT_NIL;
  *str = NULL;
  *len = 0;
  *num = 0;
  if (klen > KEY_MAX) return 0;
  if (klen == 0) key = "";
  uint32_t h = hash_key(d, key, klen);
  uint64_t now = 0;
  int rc = 0;

  pthread_mutex_lock(&d->lock);
  entry_t *e = find(d, h, key, klen);
  if (e == NULL) goto done;
  if (is_expired(e, &now)) {
    remove_entry(d, e);
    goto done;
  }
  touch(d, e);
  if (e->type == AIGW_SHDICT_NUMBER) {
    *num = e->v.num;
  } else if (e->v.len == 0) {
    *str = "";
  } else {
    char *p = tbuf_reserve(e->v.len);
    if (p == NULL) {
      rc = AIGW_ENOMEM_REQ;
      goto done;
    }
    memcpy(p, e->data + e->klen, e->v.len);
    *str = p;
    *len = e->v.len;
  }
  *type = e->type;
done:
  pthread_mutex_unlock(&d->lock);
  return rc;
}

enum { OP_SET, OP_ADD, OP_REPLACE };

/* set, add and replace in one: NIL stores nothing, so it deletes (set),
 * leaves the key absent (add) or removes a live key (replace). */
static int write_op(aigw_shdict_t *d, int op, const char *key, size_t klen, int type,
                    const char *str, size_t len, double num, double ttl) {
  if (type != AIGW_SHDICT_NIL && !fits(d, klen, type, len)) return AIGW_ETOOBIG;
  if (klen > KEY_MAX) return op == OP_REPLACE ? AIGW_ENOTFOUND : 0; /* NIL, absent */
  if (klen == 0) key = "";
  if (str == NULL) str = "";
  uint64_t expires = expires_at(ttl);
  uint32_t h = hash_key(d, key, klen);
  uint64_t now = 0;
  int rc = 0;

  pthread_mutex_lock(&d->lock);
  entry_t *e = find(d, h, key, klen);
  int live = e != NULL && !is_expired(e, &now);
  if (op == OP_ADD && live) {
    touch(d, e);
    rc = AIGW_EEXISTS;
  } else if (op == OP_REPLACE && !live) {
    rc = AIGW_ENOTFOUND;
    if (e != NULL) remove_entry(d, e);
  } else if (type == AIGW_SHDICT_NIL) {
    if (e != NULL) remove_entry(d, e);
  } else {
    rc = store(d, e, h, key, klen, type, str, len, num, expires, &now);
  }
  pthread_mutex_unlock(&d->lock);
  return rc;
}

int aigw_shdict_set(aigw_shdict_t *d, const char *key, size_t klen, int type, const char *str,
                    size_t len, double num, double ttl) {
  return write_op(d, OP_SET, key, klen, type, str, len, num, ttl);
}

int aigw_shdict_add(aigw_shdict_t *d, const char *key, size_t klen, int type, const char *str,
                    size_t len, double num, double ttl) {
  return write_op(d, OP_ADD, key, klen, type, str, len, num, ttl);
}

int aigw_shdict_replace(aigw_shdict_t *d, const char *key, size_t klen, int type, const char *str,
                        size_t len, double num, double ttl) {
  return write_op(d, OP_REPLACE, key, klen, type, str, len, num, ttl);
}

int aigw_shdict_incr(aigw_shdict_t *d, const char *key, size_t klen, double delta, int has_init,
                     double init, double init_ttl, double *out) {
  if (klen > KEY_MAX) return has_init ? AIGW_ETOOBIG : AIGW_ENOTFOUND;
  if (klen == 0) key = "";
  uint32_t h = hash_key(d, key, klen);
  uint64_t now = 0;
  int rc = 0;

  pthread_mutex_lock(&d->lock);
  entry_t *e = find(d, h, key, klen);
  if (e != NULL && !is_expired(e, &now)) {
    if (e->type != AIGW_SHDICT_NUMBER) {
      rc = AIGW_ENOTNUMBER;
    } else {
      e->v.num += delta;
      *out = e->v.num;
      touch(d, e);
    }
  } else if (!has_init) {
    if (e != NULL) remove_entry(d, e);
    rc = AIGW_ENOTFOUND;
  } else if (!fits(d, klen, AIGW_SHDICT_NUMBER, 0)) {
    rc = AIGW_ETOOBIG;
  } else {
    double v = init + delta;
    rc = store(d, e, h, key, klen, AIGW_SHDICT_NUMBER, NULL, 0, v, expires_at(init_ttl), &now);
    if (rc == 0) *out = v;
  }
  pthread_mutex_unlock(&d->lock);
  return rc;
}

int aigw_shdict_delete(aigw_shdict_t *d, const char *key, size_t klen) {
  if (klen > KEY_MAX) return 0;
  if (klen == 0) key = "";
  uint32_t h = hash_key(d, key, klen);
  pthread_mutex_lock(&d->lock);
  entry_t *e = find(d, h, key, klen);
  if (e != NULL) remove_entry(d, e);
  pthread_mutex_unlock(&d->lock);
  return 0;
}

int aigw_shdict_ttl(aigw_shdict_t *d, const char *key, size_t klen, double *ttl) {
  if (klen > KEY_MAX) return AIGW_ENOTFOUND;
  if (klen == 0) key = "";
  uint32_t h = hash_key(d, key, klen);
  uint64_t now = 0;
  int rc = 0;

  pthread_mutex_lock(&d->lock);
  entry_t *e = find(d, h, key, klen);
  if (e == NULL) {
    rc = AIGW_ENOTFOUND;
  } else if (is_expired(e, &now)) {
    remove_entry(d, e);
    rc = AIGW_ENOTFOUND;
  } else {
    *ttl = e->expires == 0 ? 0 : (double)(e->expires - now) / 1000.0;
  }
  pthread_mutex_unlock(&d->lock);
  return rc;
}

void aigw_shdict_flush_all(aigw_shdict_t *d) {
  pthread_mutex_lock(&d->lock);
  drop_all(d);
  pthread_mutex_unlock(&d->lock);
}
