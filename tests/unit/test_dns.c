/* test_dns.c -- core/loop/dns.c: literals, async lookups, sharing, TTL, negative
 * caching, eviction, cancel and free (also from inside callbacks).
 *
 * libuv's test style: callbacks count their calls, assertions follow uv_run,
 * every handle is closed and uv_loop_close must return 0. The machine needs
 * no network: "localhost" comes from /etc/hosts, "127.0.N" is an inet_aton
 * form that getaddrinfo parses itself but dns.c does not treat as a literal,
 * and ".invalid" fails fast. */
#include "loop/dns.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "base/errors.h"
#include "test.h"

typedef struct {
  int calls;
  int status;
  int has_addr;
  struct sockaddr_storage addr;
} result_t;

static void on_result(void *data, int status, const struct sockaddr *addr) {
  result_t *r = data;
  r->calls++;
  r->status = status;
  r->has_addr = addr != NULL;
  if (addr != NULL)
    memcpy(&r->addr, addr,
           addr->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
}

static int port_of(const result_t *r) {
  if (r->addr.ss_family == AF_INET) return ntohs(((const struct sockaddr_in *)&r->addr)->sin_port);
  return ntohs(((const struct sockaddr_in6 *)&r->addr)->sin6_port);
}

static int is_v4(const result_t *r, const char *ip) {
  struct in_addr want;
  inet_pton(AF_INET, ip, &want);
  return r->has_addr && r->addr.ss_family == AF_INET &&
         ((const struct sockaddr_in *)&r->addr)->sin_addr.s_addr == want.s_addr;
}

static int is_loopback(const result_t *r) {
  if (!r->has_addr) return 0;
  if (r->addr.ss_family == AF_INET)
    return (ntohl(((const struct sockaddr_in *)&r->addr)->sin_addr.s_addr) >> 24) == 127;
  return r->addr.ss_family == AF_INET6 &&
         IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&r->addr)->sin6_addr);
}

static void run_and_close(uv_loop_t *loop) {
  CHECK_EQ_INT(uv_run(loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ_INT(uv_loop_close(loop), 0);
}

TEST(literal_v4) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  aigw_dns_t *dns = aigw_dns_new(&loop, 60);
  result_t r = {0};

  CHECK(aigw_dns_resolve(dns, "127.0.0.1", 8080, on_result, &r) == NULL);
  CHECK_EQ_INT(r.calls, 1); /* synchronous */
  CHECK_EQ_INT(r.status, 0);
  CHECK(is_v4(&r, "127.0.0.1"));
  CHECK_EQ_INT(port_of(&r), 8080);

  CHECK(aigw_dns_resolve(dns, "10.1.2.3", 443, on_result, &r) == NULL);
  CHECK_EQ_INT(r.calls, 2);
  CHECK(is_v4(&r, "10.1.2.3"));
  CHECK_EQ_INT(port_of(&r), 443);
  CHECK_EQ_INT(aigw_dns_lookups(dns), 0);

  aigw_dns_free(dns);
  run_and_close(&loop);
  CHECK_EQ_INT(r.calls, 2);
}

TEST(literal_v6) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  aigw_dns_t *dns = aigw_dns_new(&loop, 60);
  const char *hosts[] = {"::1", "[::1]"};
  for (int i = 0; i < 2; i++) {
    result_t r = {0};
    CHECK(aigw_dns_resolve(dns, hosts[i], 9000 + i, on_result, &r) == NULL);
    CHECK_EQ_INT(r.calls, 1);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_INT(r.addr.ss_family, AF_INET6);
    CHECK(is_loopback(&r));
    CHECK_EQ_INT(port_of(&r), 9000 + i);
  }

  /* Brackets promise an IPv6 literal; anything else fails at once. */
  result_t bad = {0};
  CHECK(aigw_dns_resolve(dns, "[localhost]", 80, on_result, &bad) == NULL);
  CHECK_EQ_INT(bad.calls, 1);
  CHECK_EQ_INT(bad.status, AIGW_EDNS);
  CHECK(!bad.has_addr);
  CHECK(aigw_dns_resolve(dns, "", 80, on_result, &bad) == NULL);
  CHECK_EQ_INT(bad.calls, 2);
  CHECK_EQ_INT(bad.status, AIGW_EDNS);
  CHECK_EQ_INT(aigw_dns_lookups(dns), 0);

  aigw_dns_free(dns);
  run_and_close(&loop);
}

TEST(localhost_async_then_cache_hit) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  aigw_dns_t *dns = aigw_dns_new(&loop, 60);
  result_t r = {0};

  CHECK(aigw_dns_resolve(dns, "localhost", 8443, on_result, &r) != NULL);
  CHECK_EQ_INT(r.calls, 0); /* asynchronous */
  CHECK_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ_INT(r.calls, 1);
  CHECK_EQ_INT(r.status, 0);
  CHECK(is_loopback(&r));
  CHECK_EQ_INT(port_of(&r), 8443);
  CHECK_EQ_INT(aigw_dns_lookups(dns), 1);

  /* Within the ttl: a synchronous hit, port applied per query, any case. */
  result_t hit = {0};
  CHECK(aigw_dns_resolve(dns, "LocalHost", 9, on_result, &hit) == NULL);
  CHECK_EQ_INT(hit.calls, 1);
  CHECK_EQ_INT(hit.status, 0);
  CHECK(is_loopback(&hit));
  CHECK_EQ_INT(port_of(&hit), 9);
  CHECK_EQ_INT(aigw_dns_lookups(dns), 1);

  aigw_dns_free(dns);
  run_and_close(&loop);
  CHECK_EQ_INT(r.calls, 1);
  CHECK_EQ_INT(hit.calls, 1);
}

TEST(concurrent_queries_share_one_lookup) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  aigw_dns_t *dns = aigw_dns_new(&loop, 60);
  result_t a = {0}, b = {0};

  CHECK(aigw_dns_resolve(dns, "localhost", 1, on_result, &a) != NULL);
  CHECK(aigw_dns_resolve(dns, "localhost", 2, on_result, &b) != NULL);
  CHECK_EQ_INT(aigw_dns_lookups(dns), 1);
  CHECK_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ_INT(a.calls, 1);
  CHECK_EQ_INT(b.calls, 1);
  CHECK_EQ_INT(a.status, 0);
  CHECK_EQ_INT(b.status, 0);
  CHECK_EQ_INT(port_of(&a), 1);
  CHECK_EQ_INT(port_of(&b), 2);
  CHECK_EQ_INT(aigw_dns_lookups(dns), 1);

  aigw_dns_free(dns);
  run_and_close(&loop);
}

typedef struct {
  aigw_dns_t *dns;
  result_t r;
  int timer_calls;
  int async_again;
} ttl_ctx_t;

static void on_ttl_timer(uv_timer_t *t) {
  ttl_ctx_t *c = t->data;
  c->timer_calls++;
  c->async_again = aigw_dns_resolve(c->dns, "localhost", 80, on_result, &c->r) != NULL;
  uv_close((uv_handle_t *)t, NULL);
}

TEST(ttl_expiry_looks_up_again) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  ttl_ctx_t c = {0};
  c.dns = aigw_dns_new(&loop, 0.05);

  CHECK(aigw_dns_resolve(c.dns, "localhost", 80, on_result, &c.r) != NULL);
  CHECK_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ_INT(c.r.calls, 1);
  CHECK(aigw_dns_resolve(c.dns, "localhost", 80, on_result, &c.r) == NULL); /* fresh */
  CHECK_EQ_INT(c.r.calls, 2);
  CHECK_EQ_INT(aigw_dns_lookups(c.dns), 1);

  uv_timer_t timer;
  uv_timer_init(&loop, &timer);
  timer.data = &c;
  uv_timer_start(&timer, on_ttl_timer, 100, 0);
  CHECK_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ_INT(c.timer_calls, 1);
  CHECK(c.async_again);
  CHECK_EQ_INT(c.r.calls, 3);
  CHECK_EQ_INT(c.r.status, 0);
  CHECK(is_loopback(&c.r));
  CHECK_EQ_INT(aigw_dns_lookups(c.dns), 2);

  aigw_dns_free(c.dns);
  run_and_close(&loop);
}

TEST(unresolvable_name_fails_and_is_cached_briefly) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  aigw_dns_t *dns = aigw_dns_new(&loop, 60);
  result_t r = {0};

  CHECK(aigw_dns_resolve(dns, "nonexistent.invalid", 443, on_result, &r) != NULL);
  CHECK_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ_INT(r.calls, 1);
  CHECK_EQ_INT(r.status, AIGW_EDNS);
  CHECK(!r.has_addr);

  /* Negative cache: the resolver is not asked again right away. */
  CHECK(aigw_dns_resolve(dns, "nonexistent.invalid", 443, on_result, &r) == NULL);
  CHECK_EQ_INT(r.calls, 2);
  CHECK_EQ_INT(r.status, AIGW_EDNS);
  CHECK_EQ_INT(aigw_dns_lookups(dns), 1);

  aigw_dns_free(dns);
  run_and_close(&loop);
}

TEST(cancel_suppresses_callback) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  aigw_dns_t *dns = aigw_dns_new(&loop, 60);
  result_t a = {0}, b = {0}, c = {0};

  aigw_dns_query_t *qa = aigw_dns_resolve(dns, "localhost", 1, on_result, &a);
  CHECK(aigw_dns_resolve(dns, "localhost", 2, on_result, &b) != NULL);
  CHECK(qa != NULL);
  aigw_dns_cancel(qa);
  CHECK_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ_INT(a.calls, 0);
  CHECK_EQ_INT(b.calls, 1);
  CHECK_EQ_INT(b.status, 0);

  /* Cancelling the only waiter still lets the lookup fill the cache. */
  aigw_dns_query_t *qc = aigw_dns_resolve(dns, "127.0.5", 3, on_result, &c);
  CHECK(qc != NULL);
  aigw_dns_cancel(qc);
  CHECK_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ_INT(c.calls, 0);
  CHECK(aigw_dns_resolve(dns, "127.0.5", 3, on_result, &c) == NULL);
  CHECK_EQ_INT(c.calls, 1);
  CHECK(is_v4(&c, "127.0.0.5"));
  CHECK_EQ_INT(aigw_dns_lookups(dns), 2);

  aigw_dns_free(dns);
  run_and_close(&loop);
  CHECK_EQ_INT(a.calls, 0);
}

TEST(cancel_then_free_while_lookup_runs) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  aigw_dns_t *dns = aigw_dns_new(&loop, 60);
  result_t r = {0};

  aigw_dns_query_t *q = aigw_dns_resolve(dns, "localhost", 80, on_result, &r);
  CHECK(q != NULL);
  aigw_dns_cancel(q);
  aigw_dns_free(dns); /* the getaddrinfo request outlives dns */
  run_and_close(&loop);
  CHECK_EQ_INT(r.calls, 0);
}

TEST(free_cancels_pending_queries) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  aigw_dns_t *dns = aigw_dns_new(&loop, 60);
  result_t a = {0}, b = {0};

  CHECK(aigw_dns_resolve(dns, "localhost", 80, on_result, &a) != NULL);
  CHECK(aigw_dns_resolve(dns, "nonexistent.invalid", 80, on_result, &b) != NULL);
  aigw_dns_free(dns);
  CHECK_EQ_INT(a.calls, 1); /* ran inside aigw_dns_free */
  CHECK_EQ_INT(a.status, UV_ECANCELED);
  CHECK(!a.has_addr);
  CHECK_EQ_INT(b.calls, 1);
  CHECK_EQ_INT(b.status, UV_ECANCELED);
  run_and_close(&loop);
  CHECK_EQ_INT(a.calls, 1);
  CHECK_EQ_INT(b.calls, 1);
}

/* Callbacks that tear things down while dns.c is delivering an answer. */
typedef struct {
  aigw_dns_t *dns;
  aigw_dns_query_t *victim;
  int free_dns;
  result_t r;
  result_t again; /* a re-query from inside the callback */
} reentry_t;

static void on_reentry(void *data, int status, const struct sockaddr *addr) {
  reentry_t *c = data;
  on_result(&c->r, status, addr);
  if (c->victim != NULL) aigw_dns_cancel(c->victim);
  if (c->free_dns) {
    aigw_dns_free(c->dns);
  } else {
    CHECK(aigw_dns_resolve(c->dns, "localhost", 7, on_result, &c->again) == NULL);
  }
}

TEST(cancel_and_resolve_from_callback) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  reentry_t c = {0};
  result_t victim = {0}, after = {0};
  c.dns = aigw_dns_new(&loop, 60);

  CHECK(aigw_dns_resolve(c.dns, "localhost", 1, on_reentry, &c) != NULL);
  c.victim = aigw_dns_resolve(c.dns, "localhost", 2, on_result, &victim);
  CHECK(aigw_dns_resolve(c.dns, "localhost", 3, on_result, &after) != NULL);
  CHECK_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ_INT(c.r.calls, 1);
  CHECK_EQ_INT(victim.calls, 0);
  CHECK_EQ_INT(after.calls, 1);
  CHECK_EQ_INT(after.status, 0);
  CHECK_EQ_INT(c.again.calls, 1); /* cache hit inside the delivering callback */
  CHECK_EQ_INT(port_of(&c.again), 7);
  CHECK_EQ_INT(aigw_dns_lookups(c.dns), 1);

  aigw_dns_free(c.dns);
  run_and_close(&loop);
}

TEST(free_from_callback) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  reentry_t c = {0};
  result_t same = {0}, other = {0};
  c.dns = aigw_dns_new(&loop, 60);
  c.free_dns = 1;

  CHECK(aigw_dns_resolve(c.dns, "localhost", 1, on_reentry, &c) != NULL);
  CHECK(aigw_dns_resolve(c.dns, "localhost", 2, on_result, &same) != NULL);
  CHECK(aigw_dns_resolve(c.dns, "nonexistent.invalid", 3, on_result, &other) != NULL);
  CHECK_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
  CHECK_EQ_INT(c.r.calls, 1);
  CHECK_EQ_INT(c.r.status, 0);
  CHECK_EQ_INT(same.calls, 1); /* its answer came too late: dns was freed */
  CHECK_EQ_INT(same.status, UV_ECANCELED);
  CHECK(!same.has_addr);
  /* The other lookup may finish before or after; either way one call. */
  CHECK_EQ_INT(other.calls, 1);
  CHECK(other.status == AIGW_EDNS || other.status == UV_ECANCELED);
}

/* Resolves "127.0.1" .. "127.0.<n>" one after the other. */
typedef struct {
  aigw_dns_t *dns;
  int next, last, failures;
} chain_t;

static void on_chain(void *data, int status, const struct sockaddr *addr) {
  chain_t *c = data;
  char host[32];
  if (status != 0) c->failures++;
  if (c->next > c->last) return;
  snprintf(host, sizeof host, "127.0.%d", c->next++);
  if (aigw_dns_resolve(c->dns, host, 80, on_chain, c) == NULL) c->failures++;
}

TEST(cache_is_bounded_lru) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  chain_t c = {0};
  result_t r = {0};
  c.dns = aigw_dns_new(&loop, 60);
  c.next = 1;
  c.last = 1025; /* one more than the cache holds */

  on_chain(&c, 0, NULL);
  CHECK_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ_INT(c.failures, 0);
  CHECK_EQ_INT(aigw_dns_lookups(c.dns), 1025);

  CHECK(aigw_dns_resolve(c.dns, "127.0.1025", 80, on_result, &r) == NULL); /* kept */
  CHECK_EQ_INT(r.calls, 1);
  CHECK(aigw_dns_resolve(c.dns, "127.0.1", 80, on_result, &r) != NULL); /* evicted */
  CHECK_EQ_INT(aigw_dns_lookups(c.dns), 1026);
  CHECK_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ_INT(r.calls, 2);
  CHECK(is_v4(&r, "127.0.0.1"));

  aigw_dns_free(c.dns);
  run_and_close(&loop);
}

int main(void) {
  RUN(literal_v4);
  RUN(literal_v6);
  RUN(localhost_async_then_cache_hit);
  RUN(concurrent_queries_share_one_lookup);
  RUN(ttl_expiry_looks_up_again);
  RUN(unresolvable_name_fails_and_is_cached_briefly);
  RUN(cancel_suppresses_callback);
  RUN(cancel_then_free_while_lookup_runs);
  RUN(free_cancels_pending_queries);
  RUN(cancel_and_resolve_from_callback);
  RUN(free_from_callback);
  RUN(cache_is_bounded_lru);
  return TEST_SUMMARY();
}
