/* reload_cli.c -- `aigw reload [CONF]`: tells a running gateway to reload.
 *
 * With an admin listener in the config, it POSTs /admin/reload there and
 * prints the outcome, so a rejected or refused reload shows its error and
 * exits non-zero. It sends an admin key when it has one: the config's first
 * admin_keys entry, else the first of AIGW_ADMIN_KEYS (for a config that does
 * not read it); without one the gateway serves it only as a loopback client
 * naming a loopback Host, which it is. Without an admin listener, it sends
 * SIGHUP to the process in pid_file; the outcome is then only in the
 * gateway's log. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "base/addr.h"
#include "base/config.h"

/* The admin key to send, copied into out (at most outlen - 1 bytes), and
 * where it came from; NULL when there is none. A key that a header line
 * cannot carry is refused: 1 with a message. */
static int admin_key(const aigw_config_t *c, char *out, size_t outlen, const char **from) {
  *from = NULL;
  const char *k = c->first_admin_key, *end = NULL;
  if (k) {
    *from = "admin_keys in the config";
    end = k + strlen(k);
  } else {
    /* As conf/gateway.lua splits it: commas and blanks. */
    const char *env = getenv("AIGW_ADMIN_KEYS");
    if (env == NULL) return 0;
    k = env + strspn(env, ", \t\r\n");
    end = k + strcspn(k, ", \t\r\n");
    if (k == end) return 0;
    *from = "AIGW_ADMIN_KEYS";
  }
  if ((size_t)(end - k) >= outlen) {
    fprintf(stderr, "aigw: the admin key from %s is too long to send\n", *from);
    return 1;
  }
  for (const char *p = k; p < end; p++) {
    if (*p < 33 || *p > 126) {
      fprintf(stderr, "aigw: the admin key from %s holds a byte a header cannot carry\n", *from);
      return 1;
    }
  }
  memcpy(out, k, (size_t)(end - k));
  out[end - k] = '\0';
  return 0;
}

static int via_admin(const aigw_config_t *c) {
  struct sockaddr_storage ss;
  if (aigw_parse_listen(c->admin_listen, &ss) != 0) {
    fprintf(stderr, "aigw: admin_listen %s: not an address\n", c->admin_listen);
    return 1;
  }
  /* A wildcard listen address is reached on loopback. */
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    if (in->sin_addr.s_addr == htonl(INADDR_ANY)) in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  } else if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr)) in6->sin6_addr = in6addr_loopback;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM, 0);
  if (fd < 0) {
    perror("aigw: socket");
    return 1;
  }
  /* A reload builds every worker's VM; a minute is far more than that. */
  struct timeval tv = {.tv_sec = 60};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  socklen_t len =
      ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
  if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
    fprintf(stderr, "aigw: cannot reach the admin listener at %s: %s (is aigw running?)\n",
            c->admin_listen, strerror(errno));
    close(fd);
    return 1;
  }
  /* The Host names the address connected to: without admin keys the
   * gateway serves only a Host that names a loopback address. */
  char addr[INET6_ADDRSTRLEN], host[INET6_ADDRSTRLEN + 8];
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &in->sin_addr, addr, sizeof addr);
    snprintf(host, sizeof host, "%s:%u", addr, (unsigned)ntohs(in->sin_port));
  } else {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof addr);
    snprintf(host, sizeof host, "[%s]:%u", addr, (unsigned)ntohs(in6->sin6_port));
  }
  char key[4096];
  const char *key_from;
  if (admin_key(c, key, sizeof key, &key_from) != 0) {
    close(fd);
    return 1;
  }
  char req[4608];
  int n = snprintf(req, sizeof req,
                   "POST /admin/reload HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\n"
                   "Connection: close\r\n%s%s%s\r\n",
                   host, key_from ? "Authorization: Bearer " : "", key_from ? key : "",
                   key_from ? "\r\n" : "");
  int sent = n > 0 && (size_t)n < sizeof req && write(fd, req, (size_t)n) == n;
  OPENSSL_cleanse(key, sizeof key);
  OPENSSL_cleanse(req, sizeof req);
  if (!sent) {
    fprintf(stderr, "aigw: cannot send the reload request\n");
    close(fd);
    return 1;
  }
  char resp[8192];
  size_t got = 0;
  ssize_t r;
  while (got < sizeof resp - 1 && (r = read(fd, resp + got, sizeof resp - 1 - got)) > 0)
    got += (size_t)r;
  close(fd);
  resp[got] = '\0';
  int status = 0;
  if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1) {
    fprintf(stderr, "aigw: no answer from the admin listener\n");
    return 1;
  }
  const char *body = strstr(resp, "\r\n\r\n");
  body = body ? body + 4 : "";
  if (status == 200) {
    printf("reloaded: %s", body);
    return 0;
  }
  if (status == 401 || status == 403) {
    fprintf(stderr, "aigw: reload refused by the admin listener at %s (%d): %s", c->admin_listen,
            status, body);
    if (status == 401 || !key_from)
      fprintf(stderr,
              "aigw: no admin key was sent: set AIGW_ADMIN_KEYS (or admin_keys in %s) "
              "to one of the gateway's admin keys\n",
              c->path);
    else
      fprintf(stderr, "aigw: the admin key sent (from %s) is not one of the gateway's admin keys\n",
              key_from);
    return 1;
  }
  fprintf(stderr, "aigw: reload failed (%d): %s", status, body);
  return 1;
}

static int via_pid_file(const aigw_config_t *c) {
  FILE *f = fopen(c->pid_file, "r");
  long pid = 0;
  if (f == NULL || fscanf(f, "%ld", &pid) != 1 || pid <= 1) {
    fprintf(stderr, "aigw: %s: no pid (is aigw running?)\n", c->pid_file);
    if (f) fclose(f);
    return 1;
  }
  fclose(f);
  if (kill((pid_t)pid, SIGHUP) != 0) {
    fprintf(stderr, "aigw: cannot signal pid %ld: %s\n", pid, strerror(errno));
    return 1;
  }
  printf("sent SIGHUP to pid %ld; the outcome is in its log\n", pid);
  return 0;
}

int aigw_cmd_reload(const aigw_config_t *c) {
  if (c->admin_listen) return via_admin(c);
  if (c->pid_file) return via_pid_file(c);
  fprintf(stderr,
          "aigw: %s has neither admin_listen nor pid_file: cannot find the running "
          "gateway (send it SIGHUP)\n",
          c->path);
  return 1;
}
