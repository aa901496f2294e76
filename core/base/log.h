/* log.h -- the error log: one line per event on stderr, safe from any thread.
 *
 * Text lines look like `2026-11-24T01:02:03.123Z warn [w1] message k=v ...`;
 * with aigw_log_format AIGW_LOG_JSON each line is one JSON object instead:
 * {"time":"2026-11-24T01:02:03.123Z","level":"warn","thread":"w1","msg":"message","k":v}.
 * Provider keys and gateway keys must never be passed here.
 *
 * Until aigw_log_writer_start() (and in every one-shot command) a line is
 * written at once with one write(2). Once the writer runs, a line is
 * formatted on the caller's stack and copied into a bounded buffer under a
 * mutex held for that copy only; the writer thread writes the buffer out in
 * batches, every AIGW_LOG_FLUSH_MS or at once for a warn or error line or a
 * buffer past its high-water mark. A line that does not fit (the sink is
 * not keeping up) is dropped and counted: a worker never waits for stderr.
 * The writer says how many lines it dropped in one warn line once the sink
 * takes lines again. */
#ifndef AIGW_LOG_H
#define AIGW_LOG_H

#include <stddef.h>
#include <stdint.h>

typedef enum { AIGW_LOG_DEBUG, AIGW_LOG_INFO, AIGW_LOG_WARN, AIGW_LOG_ERROR } aigw_log_level_t;
typedef enum { AIGW_LOG_TEXT, AIGW_LOG_JSON } aigw_log_format_t;

extern aigw_log_level_t aigw_log_level;
extern aigw_log_format_t aigw_log_format;

/* Pending lines the writer holds at most (a second buffer of this size is
 * the one being written), and how often it writes them out. */
#define AIGW_LOG_BUFFER_SIZE (1u << 20)
#define AIGW_LOG_FLUSH_MS 20

/* Parses "debug" | "info" | "warn" | "error"; returns -1 for anything else. */
int aigw_log_level_parse(const char *s);
/* Parses "text" | "json"; returns -1 for anything else. */
int aigw_log_format_parse(const char *s);
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

/* A field of a structured line (aigw_log_fields). */
typedef enum {
  AIGW_LOG_STR,   /* s, n: text; quoted when it needs to be (text), a JSON string (json) */
  AIGW_LOG_RAW,   /* s, n: a number's or a boolean's text, as Lua's tostring wrote it; a
                   * JSON string when it is not a JSON number or literal */
  AIGW_LOG_INT,   /* num, written as an integer when it is one (else as %.14g) */
  AIGW_LOG_FIXED6 /* num, written with six decimals (cost) */
} aigw_log_type_t;

/* Or'd into a field's type: its key is a plain identifier ([a-z_0-9]),
 * written with no check (the core's own fields). */
#define AIGW_LOG_PLAIN_KEY 0x100

typedef struct {
  const char *key;
  size_t klen;
  int type; /* aigw_log_type_t, maybe | AIGW_LOG_PLAIN_KEY */
  const char *s;
  size_t n;
  double num;
} aigw_log_field_t;

/* One line: msg (cut at 1800 bytes), then the fields in the order given:
 * ` key=value` each in text (a value holding a space, a quote, '=' or a
 * control character, or empty, is quoted with Lua's %q escapes and "\n"
 * for a newline), members of the object in json. Nothing is copied past the
 * call. */
void aigw_log_fields(aigw_log_level_t level, const char *msg, size_t msglen,
                     const aigw_log_field_t *f, int n);

/* Starts the writer thread (aigw run, before the workers). 0 or a negative
 * errno. */
int aigw_log_writer_start(void);
/* Writes out everything pending, stops and joins the writer; lines after
 * it are written at once again. Called once no worker runs. */
void aigw_log_writer_stop(void);
/* Writes what is pending from the calling thread (before abort()). */
void aigw_log_flush(void);
/* Lines dropped since the process started because the sink did not keep
 * up. */
uint64_t aigw_log_dropped(void);

/* For tests: formats one line as aigw_log_fields would into buf (at least
 * 256 bytes), with a fixed time; returns its length, newline included. */
size_t aigw__log_format_line(char *buf, size_t cap, aigw_log_level_t level, const char *msg,
                             size_t msglen, const aigw_log_field_t *f, int n);

#endif
