/* redis.h -- a Redis client on hiredis's asynchronous API, on a uv loop.
 *
 * One client holds at most one connection, made when the first command
 * needs it and reused by every later one. Commands are pipelined: each is
 * appended to the connection's output buffer, everything queued in one loop
 * turn goes out in one write, and replies are matched to commands in order.
 *
 * Connecting: the host is resolved with the worker's asynchronous resolver
 * (dns.h) and hiredis is handed the address, so nothing blocks the loop.
 * AUTH (user and password, or password alone) and SELECT, when the URL asks
 * for them, are queued ahead of the first commands and go out in their write.
 *
 * Timeouts (hiredis 0.14 has none of its own), on one uv timer per client:
 * - connect_timeout covers the lookup and the TCP connect. Commands issued
 *   meanwhile wait in the client; they are written once the connection is
 *   up. When it fails, each of them gets "redis unavailable: <reason>".
 * - timeout covers each command from the moment it is written to its
 *   reply. When it passes, the command gets "timeout" at once and the
 *   connection is dropped: every command still waiting on it gets
 *   "timeout" too (their replies would have queued behind the late one).
 *   A late reply never reaches anyone.
 * - after a failed connection attempt, commands fail at once with
 *   "redis unavailable: <reason>" for a back-off (100 ms, doubling up to
 *   1 s, reset by a successful connection); the next command after it
 *   tries again. A connection lost while established is retried by the
 *   next command without waiting.
 *
 * A reply no command waits for, a malformed one, or one past 32 MiB drops
 * the connection: commands waiting on it get "redis connection lost: ..."
 * and the next command connects again.
 *
 * Callbacks run on the loop, never from inside aigw_redis_send (a failure
 * known at once is its return value). A callback may call anything here,
 * including aigw_redis_free on its own client.
 *
 * Handles: the client's timer and socket are referenced (keep the loop
 * alive) only while some command is waiting; an idle connection never holds
 * the loop. aigw_redis_close releases both. */
#ifndef AIGW_REDIS_H
#define AIGW_REDIS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <hiredis/hiredis.h>

#include "base/buf.h"
#include "loop/dns.h"

typedef struct aigw_redis_s aigw_redis_t;
typedef struct aigw_redis_op_s aigw_redis_op_t;
typedef struct aigw_loop_s aigw_loop_t;

typedef struct {
  char *host;     /* a name or an IP literal (no brackets) */
  uint16_t port;  /* 6379 unless given */
  char *user;     /* NULL: AUTH with the password alone (or no AUTH) */
  char *password; /* NULL: no AUTH */
  int db;         /* 0: no SELECT */
} aigw_redis_url_t;

/* Parses redis://[[user]:password@]host[:port][/db]. User and password may be
 * percent-encoded; an IPv6 host goes in brackets. Returns 0, or -1 with a
 * message in err. Free the result with aigw_redis_url_free. */
int aigw_redis_parse_url(const char *url, aigw_redis_url_t *out, char *err, size_t errlen);
void aigw_redis_url_free(aigw_redis_url_t *u);

/* A client for url; timeouts in seconds (> 0). NULL with err set when the
 * URL is bad. */
aigw_redis_t *aigw_redis_new(uv_loop_t *loop, aigw_dns_t *dns, const char *url,
                             double connect_timeout, double timeout, char *err, size_t errlen);
/* Fails every pending command with "redis connection closed", drops the
 * connection and closes the client's handles; later commands get that error
 * too. Idempotent. */
void aigw_redis_close(aigw_redis_t *r);
/* Closes, then frees the client (once its timer's close callback has run;
 * from inside a callback, once that callback returns). */
void aigw_redis_free(aigw_redis_t *r);

/* err is NULL and replies[0..n-1] are the replies (valid during the call
 * only), or err is the reason no reply will come ("timeout", "redis
 * unavailable: ...", "redis connection lost: ...", "redis connection
 * closed") and replies is NULL. */
typedef void (*aigw_redis_cb)(void *data, const char *err, redisReply **replies, int n);

/* Sends n commands, already in the Redis protocol (RESP arrays of bulk
 * strings), one after the other in cmds; lens[i] is the size of command i.
 * The bytes are copied or written before this returns. cb runs once, with
 * all n replies, unless the operation is cancelled first. Returns the
 * operation, or NULL with a static or client-owned message in *err (valid
 * until the next call on this client) when it fails at once: closed,
 * backing off, no memory, or a connection attempt that failed at once. */
aigw_redis_op_t *aigw_redis_send(aigw_redis_t *r, const char *cmds, const size_t *lens, int n,
                                 aigw_redis_cb cb, void *data, const char **err);
/* Forgets op: its callback will never run. Its replies, if they come, are
 * dropped. Valid until the callback starts. */
void aigw_redis_cancel(aigw_redis_op_t *op);

/* Appends one command of argc arguments to b in the Redis protocol.
 * Returns 0 or AIGW_ENOMEM_REQ (b is then as it was). */
int aigw_redis_format(aigw_buf_t *b, int argc, const char *const *argv, const size_t *argvlen);

/* --- per loop (loop->redis): clients shared by every VM generation of a
 * worker --- */

/* The loop's client for this URL and these timeouts, made on first use;
 * each call takes a reference. NULL with err set when the URL is bad. */
aigw_redis_t *aigw_redis_acquire(aigw_loop_t *loop, const char *url, double connect_timeout,
                                 double timeout, char *err, size_t errlen);
/* Drops a reference; the last one frees the client. */
void aigw_redis_release(aigw_redis_t *r);
/* Closes every client of the loop (its connection and handles); for the
 * worker's shutdown, before its loop ends. Clients still referenced stay
 * allocated, closed, until released. */
void aigw_redis_close_all(aigw_loop_t *loop);

#endif
