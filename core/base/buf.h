/* buf.h -- a growable byte buffer for request-sized data.
 *
 * Growth goes through aigw_try_realloc: a failed append returns
 * AIGW_ENOMEM_REQ and leaves the buffer as it was. */
#ifndef AIGW_BUF_H
#define AIGW_BUF_H

#include <stddef.h>
#include <string.h>

#include "base/alloc.h"
#include "base/errors.h"

typedef struct {
  char *data;
  size_t len;
  size_t cap;
} aigw_buf_t;

static inline int aigw_buf_reserve(aigw_buf_t *b, size_t extra) {
  if (b->len + extra <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra) cap *= 2;
  char *p = aigw_try_realloc(b->data, cap);
  if (p == NULL) return AIGW_ENOMEM_REQ;
  b->data = p;
  b->cap = cap;
  return 0;
}

static inline int aigw_buf_append(aigw_buf_t *b, const void *p, size_t n) {
  int rc = aigw_buf_reserve(b, n);
  if (rc) return rc;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

static inline int aigw_buf_append_str(aigw_buf_t *b, const char *s) {
  return aigw_buf_append(b, s, strlen(s));
}

/* Writes n in decimal into out (at least 21 bytes); returns the length. */
static inline size_t aigw_u64toa(unsigned long long n, char *out) {
  char tmp[24];
  size_t i = 0;
  do {
    tmp[i++] = (char)('0' + n % 10);
    n /= 10;
  } while (n);
  for (size_t j = 0; j < i; j++) out[j] = tmp[i - 1 - j];
  return i;
}

static inline void aigw_buf_free(aigw_buf_t *b) {
  aigw_free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

#endif
