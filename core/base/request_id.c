/* request_id.c -- request ids from a per-thread xoshiro256** generator,
 * seeded from the OS. Ids need to be unique, not secret: no syscall per id. */
#include "base/request_id.h"

#include <stdint.h>
#include <sys/random.h>
#include <time.h>

static _Thread_local uint64_t state[4];
static _Thread_local int seeded;

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next(void) {
  if (!seeded) {
    if (getrandom(state, sizeof state, 0) != (ssize_t)sizeof state) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      state[0] = (uint64_t)ts.tv_nsec ^ 0x9e3779b97f4a7c15ull;
      state[1] = (uint64_t)ts.tv_sec * 0xbf58476d1ce4e5b9ull;
      state[2] = (uint64_t)(uintptr_t)&seeded;
      state[3] = 0x94d049bb133111ebull;
    }
    seeded = 1;
  }
  uint64_t r = rotl(state[1] * 5, 7) * 9, t = state[1] << 17;
  state[2] ^= state[0];
  state[3] ^= state[1];
  state[1] ^= state[2];
  state[0] ^= state[3];
  state[2] ^= t;
  state[3] = rotl(state[3], 45);
  return r;
}

int aigw_request_id_new(char *out) {
  static const char hex[] = "0123456789abcdef";
  uint64_t a = next(), b = next();
  for (int i = 0; i < 16; i++) {
    out[i] = hex[(a >> (i * 4)) & 15];
    out[16 + i] = hex[(b >> (i * 4)) & 15];
  }
  out[32] = '\0';
  return 32;
}

int aigw_request_id_valid(const char *s, size_t n) {
  if (n == 0 || n > 64) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_' || c == '.' || c == ':'))
      return 0;
  }
  return 1;
}
