/* addr.c -- listen addresses: "host:port" and "[v6]:port" into a sockaddr,
 * and whether an address is loopback. */
#include "base/addr.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "base/errors.h"

int aigw_parse_listen(const char *s, struct sockaddr_storage *out) {
  char host[256];
  const char *colon;
  if (s[0] == '[') {
    const char *end = strchr(s, ']');
    if (end == NULL || end[1] != ':') return AIGW_ECONFIG;
    size_t n = (size_t)(end - s - 1);
    if (n >= sizeof host) return AIGW_ECONFIG;
    memcpy(host, s + 1, n);
    host[n] = '\0';
    colon = end + 1;
  } else {
    colon = strrchr(s, ':');
    if (colon == NULL) return AIGW_ECONFIG;
    size_t n = (size_t)(colon - s);
    if (n >= sizeof host) return AIGW_ECONFIG;
    memcpy(host, s, n);
    host[n] = '\0';
  }
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || end == colon + 1 || port < 0 || port > 65535) return AIGW_ECONFIG;
  if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
  if (host[0] == '\0' || strcmp(host, "*") == 0) strcpy(host, "0.0.0.0");
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out) == 0) return 0;
  if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)out) == 0) return 0;
  return AIGW_ECONFIG;
}

int aigw_sockaddr_is_loopback(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    static const unsigned char lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const unsigned char v4[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(&in6->sin6_addr, lo, 16) == 0) return 1;
    if (memcmp(&in6->sin6_addr, v4, 12) == 0) return in6->sin6_addr.s6_addr[12] == 127;
  }
  return 0;
}
