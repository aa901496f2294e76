/* split.h -- how a fuzz input says where to cut its payload.
 *
 * The first byte's low 5 bits give m, the number of length bytes that follow
 * it; the rest of the input is the payload. The payload is cut into pieces
 * whose lengths are those m bytes (a byte b gives b + 1 bytes), cycling
 * through them, the last piece taking what is left. With m = 0 the payload
 * is one piece. So the fuzzer mutates the cuts and the bytes separately, and
 * a seed written by hand is "\x00" followed by the payload.
 *
 *   split_t s;
 *   split_init(&s, data, size);
 *   const uint8_t *p; size_t n;
 *   while (split_next(&s, &p, &n)) feed(p, n); */
#ifndef AIGW_FUZZ_SPLIT_H
#define AIGW_FUZZ_SPLIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  const uint8_t *lens; /* the length bytes */
  size_t nlens;
  const uint8_t *p; /* the payload */
  size_t n;
  size_t off;  /* payload bytes handed out */
  size_t next; /* index of the next length byte */
} split_t;

static inline void split_init(split_t *s, const uint8_t *data, size_t size) {
  size_t m = size ? (data[0] & 31u) : 0;
  if (size == 0 || 1 + m > size) m = size ? size - 1 : 0;
  s->lens = size ? data + 1 : data;
  s->nlens = m;
  s->p = size ? data + 1 + m : data;
  s->n = size ? size - 1 - m : 0;
  s->off = 0;
  s->next = 0;
}

/* The next piece (never empty); 0 when the payload is all handed out. */
static inline int split_next(split_t *s, const uint8_t **p, size_t *n) {
  if (s->off >= s->n) return 0;
  size_t len = s->n - s->off;
  if (s->nlens) {
    size_t want = (size_t)s->lens[s->next++ % s->nlens] + 1;
    if (want < len) len = want;
  }
  *p = s->p + s->off;
  *n = len;
  s->off += len;
  return 1;
}

/* The payload as a whole. */
static inline const uint8_t *split_payload(const split_t *s, size_t *n) {
  *n = s->n;
  return s->p;
}

#endif
