/* gateway.h -- an aigw worker inside a fuzz target, and the ends of the
 * connections around it.
 *
 * fgw_start() sets a worker up as `aigw run` does for each of its threads
 * (core/server/worker.c, core/server/test_cmd.c): a uv loop, DNS cache, upstream pool,
 * shared zones, the VM generation built from a config, and a listener on
 * 127.0.0.1 at a port the kernel picks. The target then plays the client
 * (and, for the upstream target, the provider) with plain non-blocking
 * sockets, and runs the worker's loop between its moves:
 *
 *   fgw_start(config_text);            once, in LLVMFuzzerInitialize
 *   int fd = fgw_connect();            a client connection, accepted
 *   fgw_send(fd, p, n); fgw_settle();  the gateway reads and acts on it
 *   fgw_recv(fd, &buf);                what it answered so far
 *   fgw_close(fd);                     the client goes; the loop settles
 *
 * fgw_settle() runs the loop until nothing is left to do but wait: no
 * callback due, no readiness pending in the backend. The gateway's own
 * timeouts are set long in the targets' configs, so a run never waits on
 * one. */
#ifndef AIGW_FUZZ_GATEWAY_H
#define AIGW_FUZZ_GATEWAY_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "loop/loop.h"

/* Starts the worker from config text; its listen address is replaced by
 * 127.0.0.1:0. The config may hold "@UPSTREAM@", replaced by the address
 * of fgw_upstream_listen()'s socket. Exits on failure. */
void fgw_start(const char *name, const char *config_text);
aigw_loop_t *fgw_loop(void);

/* Runs the loop until it has nothing to do but wait. */
void fgw_settle(void);

/* Settles, and goes on while the backend sees readiness within `ms`:
 * on a loaded machine the kernel may deliver a loopback FIN or reset
 * after the loop looked settled. Only for the moment before a finding is
 * declared: it costs `ms` at least. */
void fgw_settle_late(int ms);

/* A client connection, accepted by the gateway when this returns. */
int fgw_connect(void);
/* Writes all of p (running the loop while the socket is full). Returns 0,
 * or -1 when the gateway has closed the connection. */
int fgw_send(int fd, const void *p, size_t n);
/* Appends what is readable to out. Returns 1 when the peer has closed. */
int fgw_recv(int fd, aigw_buf_t *out);
/* Closes with a reset (no TIME_WAIT left behind). */
void fgw_close(int fd);

/* The provider's side: a listening socket the config names as @UPSTREAM@,
 * and the connections the gateway makes to it. */
void fgw_upstream_listen(void);
int fgw_upstream_accept(void); /* -1 when none is waiting */

/* 1 while the gateway holds client connections. */
int fgw_busy(void);

/* The HTTP/1.1 responses of a client's stream, read with llhttp. */
typedef struct {
  int responses;      /* final (>= 200) responses whose head was read */
  int complete;       /* final responses read to their end */
  int interim;        /* 1xx heads */
  int error;          /* llhttp's error, 0 (HPE_OK) if none */
  const char *reason; /* what is wrong, NULL if nothing */
  int first_status;
  char odd_name[64]; /* the first header name not in the list */
} fgw_responses_t;

/* Reads the responses in p[0, n). heads[i] says whether the i-th request
 * was a HEAD (its response has no body); nheads of them are known. names,
 * when not NULL, lists the header names a response may have (lower case; a
 * name ending in '*' is a prefix), NULL-terminated: any other is reported
 * (a header line the gateway did not mean to write). */
void fgw_read_responses(const char *p, size_t n, const uint8_t *heads, int nheads,
                        const char *const *names, fgw_responses_t *out);

/* The requests a client stream holds, as the server's parser (llhttp, in
 * the same strict mode) sees them: how many begin, and which are HEAD. */
typedef struct {
  int begun;
  int nheads;
  uint8_t heads[256];
} fgw_requests_t;

void fgw_read_requests(const char *p, size_t n, fgw_requests_t *out);

#endif
