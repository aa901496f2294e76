/* listener.c -- listening sockets, one per worker per address, sharing the
 * port through SO_REUSEPORT so the kernel spreads connections over workers.
 * libuv 1.44 has no flag for it: the socket is made here and handed over
 * with uv_tcp_open(). */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/addr.h"
#include "base/log.h"
#include "http/http_conn.h"

static void on_connection(uv_stream_t *s, int status) {
  aigw_listener_t *l = s->data;
  if (status < 0) {
    aigw_log_warn("accept: %s", uv_strerror(status));
    return;
  }
  aigw_conn_accept(l);
}

int aigw__listener_open(aigw_loop_t *loop, aigw_listener_t *l, const char *addr, int admin) {
  struct sockaddr_storage ss;
  int rc = aigw_parse_listen(addr, &ss);
  if (rc < 0) return rc;
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
    rc = -errno;
    close(fd);
    return rc;
  }
  if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  socklen_t len =
      ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
    rc = -errno;
    close(fd);
    return rc;
  }
  uv_tcp_init(&loop->uv, &l->tcp);
  l->tcp.data = l;
  l->loop = loop;
  l->admin = admin;
  rc = uv_tcp_open(&l->tcp, fd);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection);
  if (rc != 0) {
    if (!uv_is_closing((uv_handle_t *)&l->tcp) &&
        uv_fileno((uv_handle_t *)&l->tcp, &(uv_os_fd_t){0}) != 0)
      close(fd); /* uv_tcp_open failed: the handle does not own fd */
    uv_close((uv_handle_t *)&l->tcp, NULL);
  }
  return rc;
}
