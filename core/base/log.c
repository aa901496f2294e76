/* log.c -- the error log (see log.h). Each line is formatted into a stack
 * buffer and written with one write(2), so lines from worker threads never
 * interleave. */
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

aigw_log_level_t aigw_log_level = AIGW_LOG_INFO;
static _Thread_local int thread_id;

static const char *const names[] = {"debug", "info", "warn", "error"};

int aigw_log_level_parse(const char *s) {
  for (int i = 0; i < 4; i++)
    if (strcmp(s, names[i]) == 0) return i;
  return -1;
}

void aigw_log_set_thread_id(int id) { thread_id = id; }

void aigw_log(aigw_log_level_t level, const char *fmt, ...) {
  if (level < aigw_log_level) return;
  char line[2048];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  char who[16] = "main";
  if (thread_id) snprintf(who, sizeof who, "w%d", thread_id);
  int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s [%s] ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   ts.tv_nsec / 1000000, names[level], who);
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  if (m < 0) m = 0;
  size_t len = (size_t)n +
               ((size_t)m < sizeof line - (size_t)n - 1 ? (size_t)m : sizeof line - (size_t)n - 2);
  line[len++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, len);
  (void)w;
}

/* Whether a line of this level would be written (so that Lua skips making
 * one that would not). */
__attribute__((visibility("default"), used)) int aigw_ffi_log_enabled(int level) {
  return level >= (int)aigw_log_level;
}

/* For lua/aigw/log.lua through the FFI: one message of len bytes. */
__attribute__((visibility("default"), used)) void aigw_ffi_log(int level, const char *msg,
                                                               size_t len) {
  if (level < (int)aigw_log_level) return;
  if (level < AIGW_LOG_DEBUG || level > AIGW_LOG_ERROR) level = AIGW_LOG_ERROR;
  aigw_log((aigw_log_level_t)level, "%.*s", (int)(len > 1800 ? 1800 : len), msg);
}
