/* dns.h -- asynchronous name resolution with a per-worker TTL cache.
 *
 * uv_getaddrinfo runs lookups on libuv's thread pool; answers are kept for
 * `ttl` seconds (getaddrinfo does not report record TTLs). Concurrent lookups
 * of one name share a single getaddrinfo. IP literals answer synchronously
 * inside aigw_dns_resolve (the callback still runs before it returns). */
#ifndef AIGW_DNS_H
#define AIGW_DNS_H

#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct aigw_dns_s aigw_dns_t;
typedef struct aigw_dns_query_s aigw_dns_query_t;

/* status is 0 or a negative code (AIGW_EDNS with uv's reason logged);
 * addr is valid only during the callback. */
typedef void (*aigw_dns_cb)(void *data, int status, const struct sockaddr *addr);

aigw_dns_t *aigw_dns_new(uv_loop_t *loop, double ttl);
/* Cancels pending queries (their callbacks run with UV_ECANCELED) and frees
 * the cache once libuv's pending work has returned; the loop must keep
 * running until then. */
void aigw_dns_free(aigw_dns_t *dns);

/* Resolves host:port (IPv4 preferred, then IPv6) and calls cb once. Returns a
 * handle that aigw_dns_cancel() accepts until the callback has run, or NULL
 * when the callback already ran synchronously (IP literal or cache hit). */
aigw_dns_query_t *aigw_dns_resolve(aigw_dns_t *dns, const char *host, uint16_t port,
                                   aigw_dns_cb cb, void *data);
/* The callback will not be called. */
void aigw_dns_cancel(aigw_dns_query_t *q);

#endif
