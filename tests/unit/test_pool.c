/* test_pool.c -- the per-worker upstream connection pool (core/upstream/pool.c):
 * parking, reuse by key, the max_idle bound, idle expiry by the sweep
 * timer, and a clean shutdown with every handle closed. */
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "loop/loop.h"
#include "test.h"
#include "upstream/upstream.h"

static uv_tcp_t server;
static int accepted;
/* Accepted connections stay open (a closed peer is dropped by the pool's
 * check on acquire) until teardown. */
static uv_tcp_t *peers[16];
static int npeers;

static void on_server_conn(uv_stream_t *s, int status) {
  uv_tcp_t *c = malloc(sizeof *c);
  uv_tcp_init(s->loop, c);
  if (uv_accept(s, (uv_stream_t *)c) == 0 && npeers < 16) {
    accepted++;
    peers[npeers++] = c;
  } else {
    uv_close((uv_handle_t *)c, (uv_close_cb)free);
  }
}

static int connected;
static void on_connect(uv_connect_t *req, int status) {
  if (status == 0) connected++;
  free(req);
}

/* A connected upstream connection for key, as upstream.c would make it. */
static aigw_upconn_t *connect_one(aigw_loop_t *w, aigw_pool_t *p, const char *key, int port) {
  aigw_upconn_t *uc = aigw_upconn_new(p, key);
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", port, &addr);
  uv_connect_t *req = malloc(sizeof *req);
  uv_tcp_connect(req, &uc->tcp, (struct sockaddr *)&addr, on_connect);
  int before = connected;
  while (connected == before) uv_run(&w->uv, UV_RUN_ONCE);
  return uc;
}

static int setup(aigw_loop_t *w) {
  memset(w, 0, sizeof *w);
  uv_loop_init(&w->uv);
  uv_tcp_init(&w->uv, &server);
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  uv_tcp_bind(&server, (struct sockaddr *)&addr, 0);
  uv_listen((uv_stream_t *)&server, 64, on_server_conn);
  struct sockaddr_in bound;
  int len = sizeof bound;
  uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &len);
  return ntohs(bound.sin_port);
}

static void teardown(aigw_loop_t *w, aigw_pool_t *p) {
  aigw_pool_free(p);
  for (int i = 0; i < npeers; i++) uv_close((uv_handle_t *)peers[i], (uv_close_cb)free);
  npeers = 0;
  uv_close((uv_handle_t *)&server, NULL);
  uv_run(&w->uv, UV_RUN_DEFAULT);
  CHECK_EQ_INT(uv_loop_close(&w->uv), 0);
}

TEST(reuse_by_key) {
  aigw_loop_t w;
  int port = setup(&w);
  aigw_pool_t *p = aigw_pool_new(&w);
  CHECK(aigw_pool_acquire(p, "http://a:1") == NULL);
  aigw_upconn_t *uc = connect_one(&w, p, "http://a:1", port);
  aigw_pool_release(p, uc, 4, 60000);
  CHECK(aigw_pool_acquire(p, "http://b:1") == NULL);
  aigw_upconn_t *again = aigw_pool_acquire(p, "http://a:1");
  CHECK(again == uc);
  CHECK(aigw_pool_acquire(p, "http://a:1") == NULL);
  CHECK_EQ_INT(aigw_pool_reuses(p), 1);
  aigw_upconn_close(again);
  teardown(&w, p);
}

TEST(max_idle_bound) {
  aigw_loop_t w;
  int port = setup(&w);
  aigw_pool_t *p = aigw_pool_new(&w);
  aigw_upconn_t *c[3];
  for (int i = 0; i < 3; i++) c[i] = connect_one(&w, p, "k", port);
  for (int i = 0; i < 3; i++) aigw_pool_release(p, c[i], 2, 60000);
  /* Only two are parked; the third was closed at once. */
  CHECK(c[2]->closing);
  int got = 0;
  while (aigw_pool_acquire(p, "k")) got++;
  CHECK_EQ_INT(got, 2);
  for (int i = 0; i < 2; i++) aigw_upconn_close(c[i]);
  teardown(&w, p);
}

TEST(max_idle_zero_or_draining_closes) {
  aigw_loop_t w;
  int port = setup(&w);
  aigw_pool_t *p = aigw_pool_new(&w);
  aigw_upconn_t *a = connect_one(&w, p, "k", port);
  aigw_pool_release(p, a, 0, 60000);
  CHECK(a->closing);
  aigw_upconn_t *b = connect_one(&w, p, "k", port);
  w.draining = 1;
  aigw_pool_release(p, b, 8, 60000);
  CHECK(b->closing);
  CHECK(aigw_pool_acquire(p, "k") == NULL);
  teardown(&w, p);
}

static void on_expiry_check(uv_timer_t *t) { uv_stop(t->loop); }

TEST(idle_expiry) {
  aigw_loop_t w;
  int port = setup(&w);
  aigw_pool_t *p = aigw_pool_new(&w);
  aigw_upconn_t *uc = connect_one(&w, p, "k", port);
  aigw_pool_release(p, uc, 8, 50); /* idle for at most 50 ms */
  /* The sweep runs once a second: after it, the connection is gone. */
  uv_timer_t t;
  uv_timer_init(&w.uv, &t);
  uv_timer_start(&t, on_expiry_check, 1500, 0);
  uv_run(&w.uv, UV_RUN_DEFAULT);
  CHECK(aigw_pool_acquire(p, "k") == NULL);
  uv_close((uv_handle_t *)&t, NULL);
  teardown(&w, p);
}

TEST(closed_peer_not_reused) {
  aigw_loop_t w;
  int port = setup(&w);
  aigw_pool_t *p = aigw_pool_new(&w);
  aigw_upconn_t *uc = connect_one(&w, p, "k", port);
  aigw_pool_release(p, uc, 8, 60000);
  /* The upstream closes the idle connection; wait until its FIN is here. */
  uv_close((uv_handle_t *)peers[--npeers], (uv_close_cb)free);
  uv_os_fd_t fd;
  uv_fileno((uv_handle_t *)&uc->tcp, &fd);
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  for (int i = 0; i < 200 && !(pfd.revents & POLLIN); i++) {
    uv_run(&w.uv, UV_RUN_NOWAIT);
    poll(&pfd, 1, 10);
  }
  /* Even before any read callback could see the EOF, acquire must not hand
   * out a connection whose peer has gone. */
  CHECK(aigw_pool_acquire(p, "k") == NULL);
  teardown(&w, p);
}

TEST(free_closes_idle) {
  aigw_loop_t w;
  int port = setup(&w);
  aigw_pool_t *p = aigw_pool_new(&w);
  for (int i = 0; i < 5; i++) aigw_pool_release(p, connect_one(&w, p, "k", port), 8, 60000);
  CHECK_EQ_INT(accepted >= 5, 1);
  /* teardown frees the pool with five parked connections: the loop must
   * close cleanly (uv_loop_close == 0) and ASan must see no leak. */
  teardown(&w, p);
}

int main(void) {
  RUN(reuse_by_key);
  RUN(max_idle_bound);
  RUN(max_idle_zero_or_draining_closes);
  RUN(idle_expiry);
  RUN(closed_peer_not_reused);
  RUN(free_closes_idle);
  return TEST_SUMMARY();
}
