/* loop.c -- the per-loop context's own parts: free lists and the Date line
 * (see loop.h). */
#include "loop/loop.h"

#include <time.h>

#include "base/alloc.h"

/* Sanitizer builds recycle nothing, so a use after free is caught rather
 * than hidden by a recycled object. */
#if defined(__SANITIZE_ADDRESS__)
#define RECYCLE 0
#else
#define RECYCLE 1
#endif

char *aigw_rbuf_get(aigw_loop_t *l) {
  char *buf = aigw_free_pop(&l->free_rbufs);
  return buf ? buf : aigw_malloc(AIGW_RBUF_SIZE);
}

void aigw_rbuf_put(aigw_loop_t *l, char *buf) {
  if (!aigw_free_push(&l->free_rbufs, buf)) aigw_free(buf);
}

void *aigw_free_pop(aigw_freelist_t *f) {
  void **obj = f->head;
  if (obj == NULL) return NULL;
  f->head = *obj;
  f->n--;
  return obj;
}

int aigw_free_push(aigw_freelist_t *f, void *obj) {
  if (!RECYCLE || f->n >= AIGW_MAX_FREE_OBJS) return 0;
  *(void **)obj = f->head;
  f->head = obj;
  f->n++;
  return 1;
}

void aigw_loop_free_rbufs(aigw_loop_t *l) {
  void *buf;
  while ((buf = aigw_free_pop(&l->free_rbufs)) != NULL) aigw_free(buf);
}

const char *aigw_loop_date(aigw_loop_t *l) {
  uint64_t now = uv_now(&l->uv) / 1000;
  if (now != l->date_sec || l->date[0] == '\0') {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(l->date, sizeof l->date, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    l->date_sec = now;
  }
  return l->date;
}
