/* dns.h -- asynchronous name resolution with a per-worker TTL cache.
 *
 * One aigw_dns_t per worker loop, used from that loop's thread only.
 * uv_getaddrinfo runs lookups on libuv's thread pool; answers are kept for
 * `ttl` seconds (getaddrinfo does not report record TTLs), failures for
 * min(ttl, 5 s). Concurrent lookups of one name share a single getaddrinfo.
 * IP literals answer synchronously inside aigw_dns_resolve (the callback still
 * runs before it returns), and so do fresh cache hits, positive or negative.
 * There is no timeout beyond the resolver's own: a caller with a deadline
 * cancels its query. */
#ifndef AIGW_DNS_H
#define AIGW_DNS_H

#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct aigw_dns_s aigw_dns_t;
typedef struct aigw_dns_query_s aigw_dns_query_t;

/* status is 0, AIGW_EDNS (one warn line with host and uv's reason is logged
 * per failed lookup), or UV_ECANCELED from aigw_dns_free. addr carries the
 * query's port, is NULL on failure, and is valid only during the callback. */
typedef void (*aigw_dns_cb)(void *data, int status, const struct sockaddr *addr);

/* ttl in seconds; <= 0 disables caching (concurrent queries still share). */
aigw_dns_t *aigw_dns_new(uv_loop_t *loop, double ttl);
/* Runs every pending query's callback with UV_ECANCELED before returning (no
 * callback runs after that), frees the cache, and uv_cancel()s in-flight
 * getaddrinfo requests; their small records are freed from libuv's callback,
 * so the loop must keep running until then (uv_run, then uv_loop_close).
 * May be called from inside a dns callback. NULL is a no-op. */
void aigw_dns_free(aigw_dns_t *dns);

/* Resolves host:port (IPv4 preferred, then IPv6) and calls cb once. host is
 * copied; case does not matter. An IPv6 literal may be given bare ("::1",
 * "fe80::1%eth0") or in brackets ("[::1]"); brackets are stripped, and a
 * bracketed host that is not an IPv6 literal fails. Returns a handle that
 * aigw_dns_cancel() accepts until the callback starts (the handle is freed
 * before cb is called), or NULL when the callback already ran synchronously
 * (IP literal, cache hit, invalid host, or dns being freed). */
aigw_dns_query_t *aigw_dns_resolve(aigw_dns_t *dns, const char *host, uint16_t port, aigw_dns_cb cb,
                                   void *data);
/* Frees q; its callback will not be called. A shared lookup continues for
 * other waiters and fills the cache. NULL is a no-op. */
void aigw_dns_cancel(aigw_dns_query_t *q);

/* Number of uv_getaddrinfo lookups started so far (for tests and stats). */
unsigned aigw_dns_lookups(const aigw_dns_t *dns);

#endif
