/* alloc.h -- the two doors for memory.
 *
 * aigw_malloc/aigw_calloc/aigw_realloc/aigw_strdup abort on out-of-memory: use
 * them for internal bookkeeping whose failure leaves nothing sane to do.
 * aigw_try_malloc/aigw_try_realloc return NULL: use them for request-sized data,
 * whose failure becomes a 503 or 413 for that request, never a crash. */
#ifndef AIGW_ALLOC_H
#define AIGW_ALLOC_H

#include <stddef.h>

void *aigw_malloc(size_t n);
void *aigw_calloc(size_t count, size_t n);
void *aigw_realloc(void *p, size_t n);
char *aigw_strdup(const char *s);
char *aigw_strndup(const char *s, size_t n);
void *aigw_try_malloc(size_t n);
void *aigw_try_realloc(void *p, size_t n);
void aigw_free(void *p);

#endif
