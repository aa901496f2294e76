/* alloc.c -- allocation with an explicit out-of-memory policy (see alloc.h). */
#include "base/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n) {
  fprintf(stderr, "aigw: out of memory allocating %zu bytes\n", n);
  abort();
}

void *aigw_malloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL) oom(n);
  return p;
}

void *aigw_calloc(size_t count, size_t n) {
  void *p = calloc(count ? count : 1, n ? n : 1);
  if (p == NULL) oom(count * n);
  return p;
}

void *aigw_realloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (q == NULL) oom(n);
  return q;
}

char *aigw_strndup(const char *s, size_t n) {
  char *d = aigw_malloc(n + 1);
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

char *aigw_strdup(const char *s) { return aigw_strndup(s, strlen(s)); }

void *aigw_try_malloc(size_t n) { return malloc(n ? n : 1); }

void *aigw_try_realloc(void *p, size_t n) { return realloc(p, n ? n : 1); }

void aigw_free(void *p) { free(p); }
