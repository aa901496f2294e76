/* test_shdict.c -- unit tests for core/base/shdict.c: return codes of every call,
 * binary keys and values, TTL expiry, LRU eviction, byte accounting, the
 * registry, and atomic incr across threads. */
#include "base/shdict.h"

#include "base/errors.h"
#include "test.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S AIGW_SHDICT_STRING
#define N AIGW_SHDICT_NUMBER

/* ---- helpers ---- */

static aigw_shdict_t *zone(const char *name, size_t capacity) {
  const char *err = NULL;
  aigw_shdict_t *d = aigw_shdict_new(name, capacity, &err);
  if (d == NULL) fprintf(stderr, "aigw_shdict_new(%s): %s\n", name, err);
  return d;
}

static int set_str(aigw_shdict_t *d, const char *k, const char *v, double ttl) {
  return aigw_shdict_set(d, k, strlen(k), S, v, strlen(v), 0, ttl);
}

static int set_num(aigw_shdict_t *d, const char *k, double v, double ttl) {
  return aigw_shdict_set(d, k, strlen(k), N, NULL, 0, v, ttl);
}

/* The type of key k; a string value is copied to out (NUL-terminated, up to
 * cap bytes), a number to *num. */
static int get(aigw_shdict_t *d, const char *k, char *out, size_t cap, double *num) {
  int type = -1;
  const char *str = NULL;
  size_t len = 0;
  double n = -1;
  int rc = aigw_shdict_get(d, k, strlen(k), &type, &str, &len, &n);
  if (rc != 0) return rc;
  if (out != NULL && cap > 0) {
    out[0] = '\0';
    if (type == S && len < cap) {
      memcpy(out, str, len);
      out[len] = '\0';
    }
  }
  if (num != NULL) *num = n;
  return type;
}

static int present(aigw_shdict_t *d, const char *k) {
  return get(d, k, NULL, 0, NULL) != AIGW_SHDICT_NIL;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Polls until key k is gone; the seconds that took, or -1 after 2 s. */
static double wait_gone(aigw_shdict_t *d, const char *k) {
  double start = now_s();
  while (now_s() - start < 2.0) {
    if (!present(d, k)) return now_s() - start;
    nap_ms(2);
  }
  return -1;
}

/* What one entry of this key and value length adds to `used`, measured on a
 * scratch zone (the allocator decides the rounding). */
static size_t entry_size(size_t klen, size_t vlen) {
  aigw_shdict_t *d = zone("scratch", 1 << 20);
  char *buf = calloc(1, klen + vlen + 1);
  memset(buf, 'x', klen + vlen);
  aigw_shdict_set(d, buf, klen, S, buf, vlen, 0, 0);
  size_t n = aigw_shdict_used(d);
  aigw_shdict_free(d);
  free(buf);
  return n;
}

/* ---- registry ---- */

TEST(registry) {
  const char *err = NULL;
  aigw_shdict_t *a = zone("limits", 8192);
  CHECK(a != NULL);
  CHECK(aigw_shdict_lookup("limits") == a);
  CHECK(aigw_shdict_lookup("limit") == NULL);
  CHECK(aigw_shdict_lookup("nope") == NULL);
  CHECK(aigw_shdict_lookup(NULL) == NULL);
  CHECK_EQ_STR(aigw_shdict_name(a), "limits");
  CHECK_EQ_INT(aigw_shdict_capacity(a), 8192);
  CHECK_EQ_INT(aigw_shdict_used(a), 0);

  CHECK(aigw_shdict_new("limits", 8192, &err) == NULL);
  CHECK_EQ_STR(err, "duplicate zone name");
  CHECK(aigw_shdict_lookup("limits") == a);

  aigw_shdict_t *b = zone("cache-2_B", 8192);
  CHECK(b != NULL && b != a);
  CHECK(aigw_shdict_lookup("cache-2_B") == b);

  err = NULL;
  CHECK(aigw_shdict_new("", 8192, &err) == NULL && err != NULL);
  err = NULL;
  CHECK(aigw_shdict_new(NULL, 8192, &err) == NULL && err != NULL);
  err = NULL;
  CHECK(aigw_shdict_new("a b", 8192, &err) == NULL && err != NULL);
  err = NULL;
  CHECK(aigw_shdict_new("a.b", 8192, &err) == NULL && err != NULL);
  char long_name[66];
  memset(long_name, 'n', 65);
  long_name[65] = '\0';
  CHECK(aigw_shdict_new(long_name, 8192, &err) == NULL);
  long_name[64] = '\0';
  aigw_shdict_t *c = zone(long_name, 8192);
  CHECK(c != NULL);
  err = NULL;
  CHECK(aigw_shdict_new("small", 0, &err) == NULL && err != NULL);
  CHECK(aigw_shdict_new("small", 4095, &err) == NULL);
  CHECK(aigw_shdict_new("small", 4096, NULL) != NULL); /* err may be NULL */

  aigw_shdict_free(a);
  CHECK(aigw_shdict_lookup("limits") == NULL);
  a = zone("limits", 8192); /* the name is free again */
  CHECK(a != NULL);
  aigw_shdict_free(NULL);
  aigw_shdict_free_all();
  CHECK(aigw_shdict_lookup("limits") == NULL);
  CHECK(aigw_shdict_lookup("cache-2_B") == NULL);
  CHECK(aigw_shdict_lookup("small") == NULL);
}

/* ---- basic operations ---- */

TEST(get_set) {
  aigw_shdict_t *d = zone("getset", 1 << 16);
  char buf[64];
  double num;

  CHECK_EQ_INT(get(d, "k", buf, sizeof buf, &num), AIGW_SHDICT_NIL);
  CHECK_EQ_INT(set_str(d, "k", "hello", 0), 0);
  CHECK_EQ_INT(get(d, "k", buf, sizeof buf, &num), S);
  CHECK_EQ_STR(buf, "hello");

  /* overwrite with a longer string, a number, a shorter string */
  CHECK_EQ_INT(set_str(d, "k", "a much longer value than before", 0), 0);
  CHECK_EQ_INT(get(d, "k", buf, sizeof buf, NULL), S);
  CHECK_EQ_STR(buf, "a much longer value than before");
  CHECK_EQ_INT(set_num(d, "k", 42.5, 0), 0);
  CHECK_EQ_INT(get(d, "k", buf, sizeof buf, &num), N);
  CHECK(num == 42.5);
  CHECK_EQ_INT(set_str(d, "k", "x", 0), 0);
  CHECK_EQ_INT(get(d, "k", buf, sizeof buf, NULL), S);
  CHECK_EQ_STR(buf, "x");

  /* empty string value: found, zero length, non-NULL pointer */
  CHECK_EQ_INT(set_str(d, "empty", "", 0), 0);
  int type;
  const char *str = NULL;
  size_t len = 99;
  CHECK_EQ_INT(aigw_shdict_get(d, "empty", 5, &type, &str, &len, &num), 0);
  CHECK_EQ_INT(type, S);
  CHECK_EQ_INT(len, 0);
  CHECK(str != NULL);

  /* numbers: negative, zero, huge */
  CHECK_EQ_INT(set_num(d, "n", -0.25, 0), 0);
  CHECK_EQ_INT(get(d, "n", NULL, 0, &num), N);
  CHECK(num == -0.25);
  CHECK_EQ_INT(set_num(d, "n", 1e300, 0), 0);
  CHECK_EQ_INT(get(d, "n", NULL, 0, &num), N);
  CHECK(num == 1e300);

  /* set NIL deletes */
  CHECK_EQ_INT(aigw_shdict_set(d, "k", 1, AIGW_SHDICT_NIL, NULL, 0, 0, 0), 0);
  CHECK_EQ_INT(get(d, "k", NULL, 0, NULL), AIGW_SHDICT_NIL);
  CHECK_EQ_INT(aigw_shdict_set(d, "k", 1, AIGW_SHDICT_NIL, NULL, 0, 0, 0), 0);

  /* each string get gets its own copy in the thread buffer */
  CHECK_EQ_INT(set_str(d, "a", "first", 0), 0);
  CHECK_EQ_INT(set_str(d, "a", "second", 0), 0);
  CHECK_EQ_INT(get(d, "a", buf, sizeof buf, NULL), S);
  CHECK_EQ_STR(buf, "second");
  aigw_shdict_free(d);
}

TEST(add_replace_delete) {
  aigw_shdict_t *d = zone("arp", 1 << 16);
  char buf[32];

  CHECK_EQ_INT(aigw_shdict_add(d, "k", 1, S, "v1", 2, 0, 0), 0);
  CHECK_EQ_INT(aigw_shdict_add(d, "k", 1, S, "v2", 2, 0, 0), AIGW_EEXISTS);
  CHECK_EQ_INT(aigw_shdict_add(d, "k", 1, N, NULL, 0, 1, 0), AIGW_EEXISTS);
  CHECK_EQ_INT(get(d, "k", buf, sizeof buf, NULL), S);
  CHECK_EQ_STR(buf, "v1");

  CHECK_EQ_INT(aigw_shdict_replace(d, "missing", 7, S, "v", 1, 0, 0), AIGW_ENOTFOUND);
  CHECK(!present(d, "missing"));
  CHECK_EQ_INT(aigw_shdict_replace(d, "k", 1, S, "v3", 2, 0, 0), 0);
  CHECK_EQ_INT(get(d, "k", buf, sizeof buf, NULL), S);
  CHECK_EQ_STR(buf, "v3");
  CHECK_EQ_INT(aigw_shdict_replace(d, "k", 1, N, NULL, 0, 7, 0), 0);
  double num;
  CHECK_EQ_INT(get(d, "k", NULL, 0, &num), N);
  CHECK(num == 7);

  /* NIL: add leaves a missing key absent, replace removes a live key */
  CHECK_EQ_INT(aigw_shdict_add(d, "n", 1, AIGW_SHDICT_NIL, NULL, 0, 0, 0), 0);
  CHECK(!present(d, "n"));
  CHECK_EQ_INT(aigw_shdict_add(d, "k", 1, AIGW_SHDICT_NIL, NULL, 0, 0, 0), AIGW_EEXISTS);
  CHECK_EQ_INT(aigw_shdict_replace(d, "n", 1, AIGW_SHDICT_NIL, NULL, 0, 0, 0), AIGW_ENOTFOUND);
  CHECK_EQ_INT(aigw_shdict_replace(d, "k", 1, AIGW_SHDICT_NIL, NULL, 0, 0, 0), 0);
  CHECK(!present(d, "k"));

  CHECK_EQ_INT(set_str(d, "k", "v", 0), 0);
  CHECK_EQ_INT(aigw_shdict_delete(d, "k", 1), 0);
  CHECK(!present(d, "k"));
  CHECK_EQ_INT(aigw_shdict_delete(d, "k", 1), 0);
  CHECK_EQ_INT(aigw_shdict_add(d, "k", 1, S, "again", 5, 0, 0), 0);
  CHECK(present(d, "k"));
  aigw_shdict_free(d);
}

TEST(incr) {
  aigw_shdict_t *d = zone("incr", 1 << 16);
  double out = -1, num, ttl;

  CHECK_EQ_INT(aigw_shdict_incr(d, "c", 1, 1, 0, 0, 0, &out), AIGW_ENOTFOUND);
  CHECK(out == -1);
  CHECK(!present(d, "c"));
  CHECK_EQ_INT(aigw_shdict_incr(d, "c", 1, 5, 1, 10, 0, &out), 0);
  CHECK(out == 15);
  CHECK_EQ_INT(aigw_shdict_incr(d, "c", 1, -2.5, 1, 100, 0, &out), 0); /* init ignored */
  CHECK(out == 12.5);
  CHECK_EQ_INT(aigw_shdict_incr(d, "c", 1, 0, 0, 0, 0, &out), 0);
  CHECK(out == 12.5);
  CHECK_EQ_INT(get(d, "c", NULL, 0, &num), N);
  CHECK(num == 12.5);

  CHECK_EQ_INT(set_num(d, "n", 3, 0), 0);
  CHECK_EQ_INT(aigw_shdict_incr(d, "n", 1, 1, 0, 0, 0, &out), 0);
  CHECK(out == 4);

  CHECK_EQ_INT(set_str(d, "s", "12", 0), 0);
  out = -1;
  CHECK_EQ_INT(aigw_shdict_incr(d, "s", 1, 1, 0, 0, 0, &out), AIGW_ENOTNUMBER);
  CHECK_EQ_INT(aigw_shdict_incr(d, "s", 1, 1, 1, 0, 0, &out), AIGW_ENOTNUMBER);
  CHECK(out == -1);

  /* init_ttl applies only when creating; an incr keeps the TTL it found */
  CHECK_EQ_INT(aigw_shdict_incr(d, "t", 1, 1, 1, 0, 100, &out), 0);
  CHECK_EQ_INT(aigw_shdict_ttl(d, "t", 1, &ttl), 0);
  CHECK(ttl > 99 && ttl <= 100);
  CHECK_EQ_INT(aigw_shdict_incr(d, "t", 1, 1, 1, 0, 5, &out), 0);
  CHECK(out == 2);
  CHECK_EQ_INT(aigw_shdict_ttl(d, "t", 1, &ttl), 0);
  CHECK(ttl > 99 && ttl <= 100);
  CHECK_EQ_INT(aigw_shdict_incr(d, "u", 1, 1, 1, 0, 0, &out), 0);
  CHECK_EQ_INT(aigw_shdict_ttl(d, "u", 1, &ttl), 0);
  CHECK(ttl == 0);

  /* incr on an expired key starts again from init */
  CHECK_EQ_INT(aigw_shdict_incr(d, "e", 1, 1, 1, 100, 0.02, &out), 0);
  CHECK(out == 101);
  CHECK(wait_gone(d, "e") >= 0);
  CHECK_EQ_INT(aigw_shdict_incr(d, "e", 1, 1, 0, 0, 0, &out), AIGW_ENOTFOUND);
  CHECK_EQ_INT(aigw_shdict_incr(d, "e", 1, 1, 1, 100, 0.02, &out), 0);
  CHECK(out == 101);
  aigw_shdict_free(d);
}

TEST(binary_keys_and_values) {
  aigw_shdict_t *d = zone("binary", 1 << 18);
  const char k1[] = {'a', '\0', 'b'}, k2[] = {'a', '\0', 'c'};
  const char v1[] = {'\0', '\xff', '\0', 'x', '\n'};
  int type;
  const char *str;
  size_t len;
  double num;

  CHECK_EQ_INT(aigw_shdict_set(d, k1, 3, S, v1, sizeof v1, 0, 0), 0);
  CHECK_EQ_INT(aigw_shdict_set(d, k2, 3, N, NULL, 0, 2, 0), 0);
  CHECK_EQ_INT(aigw_shdict_set(d, "a", 1, N, NULL, 0, 1, 0), 0);
  CHECK_EQ_INT(aigw_shdict_set(d, "", 0, S, "empty key", 9, 0, 0), 0);

  CHECK_EQ_INT(aigw_shdict_get(d, k1, 3, &type, &str, &len, &num), 0);
  CHECK_EQ_INT(type, S);
  CHECK_EQ_INT(len, sizeof v1);
  CHECK(memcmp(str, v1, sizeof v1) == 0);
  CHECK_EQ_INT(aigw_shdict_get(d, k2, 3, &type, &str, &len, &num), 0);
  CHECK(type == N && num == 2);
  CHECK_EQ_INT(aigw_shdict_get(d, "a", 1, &type, &str, &len, &num), 0);
  CHECK(type == N && num == 1);
  CHECK_EQ_INT(aigw_shdict_get(d, NULL, 0, &type, &str, &len, &num), 0);
  CHECK(type == S && len == 9 && memcmp(str, "empty key", 9) == 0);
  CHECK_EQ_INT(aigw_shdict_get(d, k1, 2, &type, &str, &len, &num), 0); /* "a\0" */
  CHECK_EQ_INT(type, AIGW_SHDICT_NIL);

  CHECK_EQ_INT(aigw_shdict_delete(d, k1, 3), 0);
  CHECK_EQ_INT(aigw_shdict_get(d, k1, 3, &type, &str, &len, &num), 0);
  CHECK_EQ_INT(type, AIGW_SHDICT_NIL);
  CHECK_EQ_INT(aigw_shdict_get(d, k2, 3, &type, &str, &len, &num), 0);
  CHECK_EQ_INT(type, N);

  /* the longest key, and one byte more */
  size_t kmax = 65535;
  char *big = malloc(kmax + 1);
  for (size_t i = 0; i <= kmax; i++) big[i] = (char)(i * 7);
  CHECK_EQ_INT(aigw_shdict_set(d, big, kmax, N, NULL, 0, 9, 0), 0);
  CHECK_EQ_INT(aigw_shdict_get(d, big, kmax, &type, &str, &len, &num), 0);
  CHECK(type == N && num == 9);
  CHECK_EQ_INT(aigw_shdict_get(d, big, kmax - 1, &type, &str, &len, &num), 0);
  CHECK_EQ_INT(type, AIGW_SHDICT_NIL);
  CHECK_EQ_INT(aigw_shdict_set(d, big, kmax + 1, N, NULL, 0, 9, 0), AIGW_ETOOBIG);
  CHECK_EQ_INT(aigw_shdict_add(d, big, kmax + 1, N, NULL, 0, 9, 0), AIGW_ETOOBIG);
  CHECK_EQ_INT(aigw_shdict_incr(d, big, kmax + 1, 1, 1, 0, 0, &num), AIGW_ETOOBIG);
  CHECK_EQ_INT(aigw_shdict_incr(d, big, kmax + 1, 1, 0, 0, 0, &num), AIGW_ENOTFOUND);
  CHECK_EQ_INT(aigw_shdict_get(d, big, kmax + 1, &type, &str, &len, &num), 0);
  CHECK_EQ_INT(type, AIGW_SHDICT_NIL);
  CHECK_EQ_INT(aigw_shdict_ttl(d, big, kmax + 1, &num), AIGW_ENOTFOUND);
  CHECK_EQ_INT(aigw_shdict_delete(d, big, kmax + 1), 0);
  free(big);
  aigw_shdict_free(d);
}

/* A value larger than the thread's buffer makes it grow; a small one after a
 * large one still reads right (the buffer shrinks back). */
TEST(large_values) {
  size_t n = 1 << 20;
  aigw_shdict_t *d = zone("large", 4 << 20);
  char *v = malloc(n);
  for (size_t i = 0; i < n; i++) v[i] = (char)(i * 31 + 7);
  int type;
  const char *str;
  size_t len;
  double num;

  CHECK_EQ_INT(aigw_shdict_set(d, "big", 3, S, v, n, 0, 0), 0);
  CHECK_EQ_INT(set_str(d, "small", "tiny", 0), 0);
  CHECK_EQ_INT(aigw_shdict_get(d, "big", 3, &type, &str, &len, &num), 0);
  CHECK(type == S && len == n && memcmp(str, v, n) == 0);
  CHECK_EQ_INT(aigw_shdict_get(d, "small", 5, &type, &str, &len, &num), 0);
  CHECK(type == S && len == 4 && memcmp(str, "tiny", 4) == 0);
  aigw_shdict_thread_cleanup();
  CHECK_EQ_INT(aigw_shdict_get(d, "big", 3, &type, &str, &len, &num), 0);
  CHECK(type == S && len == n && memcmp(str, v, n) == 0);
  free(v);
  aigw_shdict_free(d);
}

/* ---- TTL ---- */

TEST(ttl) {
  aigw_shdict_t *d = zone("ttl", 1 << 16);
  double ttl = -1;

  CHECK_EQ_INT(aigw_shdict_ttl(d, "k", 1, &ttl), AIGW_ENOTFOUND);
  CHECK_EQ_INT(set_str(d, "k", "v", 0), 0);
  CHECK_EQ_INT(aigw_shdict_ttl(d, "k", 1, &ttl), 0);
  CHECK(ttl == 0);
  CHECK_EQ_INT(set_str(d, "neg", "v", -5), 0); /* ttl <= 0: never expires */
  CHECK_EQ_INT(aigw_shdict_ttl(d, "neg", 3, &ttl), 0);
  CHECK(ttl == 0);
  CHECK_EQ_INT(set_str(d, "tiny", "v", 1e-9), 0); /* positive: at least 1 ms, not "never" */
  CHECK(wait_gone(d, "tiny") >= 0);
  CHECK_EQ_INT(set_str(d, "long", "v", 1e30), 0); /* clamped, still positive */
  CHECK_EQ_INT(aigw_shdict_ttl(d, "long", 4, &ttl), 0);
  CHECK(ttl > 1e9);

  double start = now_s();
  CHECK_EQ_INT(set_str(d, "k", "v", 0.05), 0);
  CHECK_EQ_INT(set_num(d, "n", 1, 0.05), 0);
  CHECK_EQ_INT(aigw_shdict_ttl(d, "k", 1, &ttl), 0);
  CHECK(ttl > 0 && ttl <= 0.05);
  CHECK(present(d, "k") || now_s() - start >= 0.04);
  double waited = wait_gone(d, "k");
  CHECK(waited >= 0);
  CHECK(now_s() - start >= 0.04); /* not before its time (coarse clock: a few ms) */
  CHECK_EQ_INT(aigw_shdict_ttl(d, "k", 1, &ttl), AIGW_ENOTFOUND);
  CHECK(wait_gone(d, "n") >= 0);

  /* expired keys count as missing for add and replace: once "w", set last
   * with the same TTL, is gone, "a" and "r" have expired untouched */
  CHECK_EQ_INT(set_str(d, "a", "old", 0.02), 0);
  CHECK_EQ_INT(set_str(d, "r", "old", 0.02), 0);
  CHECK_EQ_INT(set_str(d, "w", "old", 0.02), 0);
  CHECK(wait_gone(d, "w") >= 0);
  CHECK_EQ_INT(aigw_shdict_add(d, "a", 1, S, "new", 3, 0, 0), 0);
  char buf[8];
  CHECK_EQ_INT(get(d, "a", buf, sizeof buf, NULL), S);
  CHECK_EQ_STR(buf, "new");
  CHECK_EQ_INT(aigw_shdict_replace(d, "r", 1, S, "new", 3, 0, 0), AIGW_ENOTFOUND);
  CHECK(!present(d, "r"));

  /* set replaces the TTL; set with no TTL clears it */
  CHECK_EQ_INT(set_str(d, "x", "v", 100), 0);
  CHECK_EQ_INT(set_str(d, "x", "v", 0), 0);
  CHECK_EQ_INT(aigw_shdict_ttl(d, "x", 1, &ttl), 0);
  CHECK(ttl == 0);
  aigw_shdict_free(d);
}

/* ---- capacity, eviction, accounting ---- */

TEST(accounting) {
  aigw_shdict_t *d = zone("acct", 1 << 16);
  size_t e = entry_size(3, 10);
  CHECK(e >= 3 + 10 + 2 * sizeof(void *)); /* counts the entry header, not just bytes */

  CHECK_EQ_INT(aigw_shdict_set(d, "abc", 3, S, "0123456789", 10, 0, 0), 0);
  CHECK_EQ_INT(aigw_shdict_used(d), e);
  CHECK_EQ_INT(aigw_shdict_set(d, "abc", 3, S, "0123456789", 10, 0, 0), 0); /* in place */
  CHECK_EQ_INT(aigw_shdict_used(d), e);
  CHECK_EQ_INT(aigw_shdict_set(d, "xyz", 3, S, "0123456789", 10, 0, 0), 0);
  CHECK_EQ_INT(aigw_shdict_used(d), 2 * e);
  CHECK_EQ_INT(aigw_shdict_delete(d, "abc", 3), 0);
  CHECK_EQ_INT(aigw_shdict_used(d), e);

  /* a grown value is accounted at its new size */
  char v[1000];
  memset(v, 'v', sizeof v);
  CHECK_EQ_INT(aigw_shdict_set(d, "xyz", 3, S, v, sizeof v, 0, 0), 0);
  CHECK(aigw_shdict_used(d) >= 3 + sizeof v + 2 * sizeof(void *));
  CHECK_EQ_INT(aigw_shdict_used(d), entry_size(3, sizeof v));
  /* and shrinks back when the value does */
  CHECK_EQ_INT(aigw_shdict_set(d, "xyz", 3, N, NULL, 0, 1, 0), 0);
  CHECK(aigw_shdict_used(d) < 100 + 3);

  for (int i = 0; i < 100; i++) {
    char k[16];
    snprintf(k, sizeof k, "key%d", i);
    CHECK_EQ_INT(set_str(d, k, "value", i % 2 ? 0.01 : 0), 0);
  }
  CHECK(aigw_shdict_used(d) > 100 * 16);
  aigw_shdict_flush_all(d);
  CHECK_EQ_INT(aigw_shdict_used(d), 0);
  CHECK(!present(d, "key0"));
  CHECK(!present(d, "xyz"));
  CHECK_EQ_INT(set_str(d, "key0", "after flush", 0), 0);
  CHECK(present(d, "key0"));

  /* lazy expiry gives the bytes back too */
  aigw_shdict_flush_all(d);
  CHECK_EQ_INT(set_str(d, "t", "v", 0.01), 0);
  CHECK(aigw_shdict_used(d) > 0);
  CHECK(wait_gone(d, "t") >= 0);
  CHECK_EQ_INT(aigw_shdict_used(d), 0);
  aigw_shdict_free(d);
}

TEST(too_big) {
  size_t cap = 4096;
  aigw_shdict_t *d = zone("toobig", cap);
  char *v = calloc(1, cap + 1);
  CHECK_EQ_INT(set_str(d, "keep", "me", 0), 0);
  size_t used = aigw_shdict_used(d);

  /* a value as large as the zone can never fit with its key and header */
  CHECK_EQ_INT(aigw_shdict_set(d, "k", 1, S, v, cap, 0, 0), AIGW_ETOOBIG);
  CHECK_EQ_INT(aigw_shdict_set(d, "k", 1, S, v, cap + 1, 0, 0), AIGW_ETOOBIG);
  CHECK_EQ_INT(aigw_shdict_set(d, "k", 1, S, v, (size_t)-1, 0, 0), AIGW_ETOOBIG);
  CHECK_EQ_INT(aigw_shdict_add(d, "k", 1, S, v, cap, 0, 0), AIGW_ETOOBIG);
  CHECK_EQ_INT(aigw_shdict_replace(d, "keep", 4, S, v, cap, 0, 0), AIGW_ETOOBIG);
  /* a failed write leaves the zone as it was */
  CHECK_EQ_INT(aigw_shdict_used(d), used);
  char buf[8];
  CHECK_EQ_INT(get(d, "keep", buf, sizeof buf, NULL), S);
  CHECK_EQ_STR(buf, "me");
  CHECK(!present(d, "k"));

  /* a key too long for the zone (but under 65535) */
  CHECK_EQ_INT(aigw_shdict_set(d, v, cap, N, NULL, 0, 1, 0), AIGW_ETOOBIG);
  CHECK_EQ_INT(aigw_shdict_incr(d, v, cap, 1, 1, 0, 0, NULL), AIGW_ETOOBIG);

  /* the largest value that fits evicts everything else */
  size_t fit = cap - entry_size(1, 0) - 16; /* less the allocator's rounding */
  CHECK_EQ_INT(aigw_shdict_set(d, "k", 1, S, v, fit, 0, 0), 0);
  CHECK(present(d, "k"));
  CHECK(!present(d, "keep"));
  CHECK(aigw_shdict_used(d) <= cap);
  free(v);
  aigw_shdict_free(d);
}

TEST(lru_eviction) {
  size_t cap = 4096;
  aigw_shdict_t *d = zone("lru", cap);
  aigw_shdict_t *canary = zone("canary", cap);
  const char *v = "vvvvvvvvvvvvvvvvvvvvvvvv";
  size_t e = entry_size(4, strlen(v)); /* keys "k000" */
  int n = (int)(cap / e);              /* exactly this many fit */
  CHECK(n > 10 && n < 64);
  char k[16];

  for (int i = 0; i < n; i++) {
    snprintf(k, sizeof k, "k%03d", i);
    CHECK_EQ_INT(set_str(d, k, v, 0), 0);
  }
  CHECK_EQ_INT(aigw_shdict_used(d), (size_t)n * e);
  for (int i = 0; i < n; i++) {
    snprintf(k, sizeof k, "k%03d", i);
    CHECK(present(d, k)); /* nothing evicted yet (gets in insertion order) */
  }

  /* k000 is the least recently used: a get refreshes it, so k001 goes */
  CHECK(present(d, "k000"));
  CHECK_EQ_INT(set_str(d, "new1", v, 0), 0);
  CHECK(!present(d, "k001"));
  CHECK(present(d, "k000"));
  CHECK(present(d, "k002"));
  CHECK(aigw_shdict_used(d) <= cap);

  /* a set refreshes too: k003 stays, k004 goes */
  CHECK_EQ_INT(set_str(d, "k003", v, 0), 0);
  CHECK_EQ_INT(set_str(d, "new2", v, 0), 0);
  CHECK(!present(d, "k004"));
  CHECK(present(d, "k003"));

  /* an expired entry goes before the least recently used live one. "exp"
   * evicts k005 on the way in; once a canary set after it in another zone
   * with the same TTL has expired, so has "exp" (not touched meanwhile). */
  CHECK_EQ_INT(set_str(d, "exp_", v, 0.01), 0);
  CHECK_EQ_INT(set_str(canary, "c", v, 0.01), 0);
  CHECK(wait_gone(canary, "c") >= 0);
  CHECK_EQ_INT(set_str(d, "new3", v, 0), 0);
  CHECK(!present(d, "k005"));
  CHECK(present(d, "k006"));
  CHECK(!present(d, "exp_"));
  CHECK_EQ_INT(aigw_shdict_used(d), (size_t)n * e);
  aigw_shdict_free(d);
  aigw_shdict_free(canary);
}

/* Random operations on a small zone: the zone never goes over capacity and
 * `used` matches the entries it reports. */
TEST(random_workload) {
  size_t cap = 16384;
  aigw_shdict_t *d = zone("random", cap);
  unsigned seed = 12345;
  char v[2048];
  memset(v, 'r', sizeof v);
  double out;
  for (int i = 0; i < 50000; i++) {
    seed = seed * 1103515245 + 12345;
    char k[16];
    snprintf(k, sizeof k, "k%u", (seed >> 8) % 300);
    unsigned r = (seed >> 20) % 10;
    size_t len = (seed >> 4) % (r == 0 ? sizeof v : 64);
    if (r < 4) {
      CHECK_EQ_INT(aigw_shdict_set(d, k, strlen(k), S, v, len, 0, r == 1 ? 0.001 : 0), 0);
    } else if (r < 5) {
      int rc = aigw_shdict_incr(d, k, strlen(k), 1, 1, 0, 0, &out);
      CHECK(rc == 0 || rc == AIGW_ENOTNUMBER);
    } else if (r < 6) {
      aigw_shdict_delete(d, k, strlen(k));
    } else {
      get(d, k, NULL, 0, NULL);
    }
    if (aigw_shdict_used(d) > cap) {
      CHECK(aigw_shdict_used(d) <= cap);
      break;
    }
  }
  for (int i = 0; i < 300; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%d", i);
    aigw_shdict_delete(d, k, strlen(k));
  }
  CHECK_EQ_INT(aigw_shdict_used(d), 0);
  aigw_shdict_free(d);
}

/* ---- threads ---- */

#define THREADS 4
#define INCRS 100000

static void *incr_worker(void *arg) {
  aigw_shdict_t *d = arg;
  double out;
  long bad = 0;
  for (int i = 0; i < INCRS; i++)
    if (aigw_shdict_incr(d, "hits", 4, 1, 1, 0, 0, &out) != 0) bad++;
  aigw_shdict_thread_cleanup();
  return (void *)bad;
}

TEST(threads_incr) {
  aigw_shdict_t *d = zone("threads", 1 << 16);
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) CHECK_EQ_INT(pthread_create(&t[i], NULL, incr_worker, d), 0);
  for (int i = 0; i < THREADS; i++) {
    void *bad;
    pthread_join(t[i], &bad);
    CHECK(bad == NULL);
  }
  double num = 0;
  CHECK_EQ_INT(get(d, "hits", NULL, 0, &num), N);
  CHECK_EQ_INT((long long)num, (long long)THREADS * INCRS);
  aigw_shdict_free(d);
}

/* Writers store self-describing strings of random lengths while readers
 * check every value they get is whole: copies are never torn. */
static void *rw_worker(void *arg) {
  aigw_shdict_t *d = aigw_shdict_lookup("rw");
  unsigned seed = (unsigned)(size_t)arg * 2654435761u;
  char v[600];
  long bad = 0;
  for (int i = 0; i < 20000; i++) {
    seed = seed * 1103515245 + 12345;
    char k[16];
    snprintf(k, sizeof k, "k%u", (seed >> 8) % 50);
    if ((seed >> 16) % 2) {
      size_t len = 1 + (seed >> 4) % (sizeof v - 1);
      memset(v, (char)('a' + len % 26), len);
      v[0] = (char)(len % 251);
      if (aigw_shdict_set(d, k, strlen(k), S, v, len, 0, 0) != 0) bad++;
    } else {
      int type;
      const char *str;
      size_t len;
      double num;
      if (aigw_shdict_get(d, k, strlen(k), &type, &str, &len, &num) != 0) bad++;
      if (type != S) continue;
      if ((unsigned char)str[0] != len % 251) bad++;
      for (size_t j = 1; j < len; j++)
        if (str[j] != (char)('a' + len % 26)) {
          bad++;
          break;
        }
    }
  }
  aigw_shdict_thread_cleanup();
  return (void *)bad;
}

TEST(threads_read_write) {
  aigw_shdict_t *d = zone("rw", 8192); /* small: eviction runs concurrently too */
  pthread_t t[THREADS];
  for (size_t i = 0; i < THREADS; i++)
    CHECK_EQ_INT(pthread_create(&t[i], NULL, rw_worker, (void *)(i + 1)), 0);
  for (int i = 0; i < THREADS; i++) {
    void *bad;
    pthread_join(t[i], &bad);
    CHECK(bad == NULL);
  }
  CHECK(aigw_shdict_used(d) <= 8192);
  aigw_shdict_free(d);
}

int main(void) {
  RUN(registry);
  RUN(get_set);
  RUN(add_replace_delete);
  RUN(incr);
  RUN(binary_keys_and_values);
  RUN(large_values);
  RUN(ttl);
  RUN(accounting);
  RUN(too_big);
  RUN(lru_eviction);
  RUN(random_workload);
  RUN(threads_incr);
  RUN(threads_read_write);
  aigw_shdict_free_all();
  return TEST_SUMMARY();
}
