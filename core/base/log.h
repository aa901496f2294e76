/* log.h -- the error log: one line per event on stderr, safe from any thread.
 *
 * Lines look like `2026-11-24T01:02:03.123Z warn [w1] message`. Provider keys
 * and gateway keys must never be passed here. */
#ifndef AIGW_LOG_H
#define AIGW_LOG_H

typedef enum { AIGW_LOG_DEBUG, AIGW_LOG_INFO, AIGW_LOG_WARN, AIGW_LOG_ERROR } aigw_log_level_t;

extern aigw_log_level_t aigw_log_level;

/* Parses "debug" | "info" | "warn" | "error"; returns -1 for anything else. */
int aigw_log_level_parse(const char *s);
/* The worker id shown in each line of this thread (0 is the main thread). */
void aigw_log_set_thread_id(int id);

void aigw_log(aigw_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define aigw_log_debug(...)                                                      \
  do {                                                                           \
    if (aigw_log_level <= AIGW_LOG_DEBUG) aigw_log(AIGW_LOG_DEBUG, __VA_ARGS__); \
  } while (0)
#define aigw_log_info(...) aigw_log(AIGW_LOG_INFO, __VA_ARGS__)
#define aigw_log_warn(...) aigw_log(AIGW_LOG_WARN, __VA_ARGS__)
#define aigw_log_error(...) aigw_log(AIGW_LOG_ERROR, __VA_ARGS__)

#endif
