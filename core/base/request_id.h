/* request_id.h -- request ids: the client's x-request-id when it is sane,
 * else a new random one. */
#ifndef AIGW_REQUEST_ID_H
#define AIGW_REQUEST_ID_H

#include <stddef.h>

/* Writes a new 32-hex-digit id and a NUL into out (33 bytes); returns 32. */
int aigw_request_id_new(char *out);
/* 1 when a client-supplied id is 1..64 bytes of [A-Za-z0-9._:-]. */
int aigw_request_id_valid(const char *s, size_t n);

#endif
