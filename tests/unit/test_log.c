/* test_log.c -- unit tests for core/base/log.c: the line formatter in text
 * and json (quoting, escaping, numbers, invalid UTF-8, bounds), and the
 * writer: every line written on stop, none lost, in order. */
#include "base/log.h"

#include "test.h"

#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char out[16384];

static const char *fmt(aigw_log_format_t format, const char *msg, const aigw_log_field_t *f,
                       int n) {
  aigw_log_format = format;
  size_t len = aigw__log_format_line(out, sizeof out, AIGW_LOG_INFO, msg, strlen(msg), f, n);
  out[len] = 0;
  aigw_log_format = AIGW_LOG_TEXT;
  return out;
}

#define STR(k, v) \
  { k, sizeof k - 1, AIGW_LOG_STR, v, sizeof v - 1, 0 }
#define INT(k, v) \
  { k, sizeof k - 1, AIGW_LOG_INT, NULL, 0, v }

TEST(text_prefix_and_plain_values) {
  aigw_log_field_t f[] = {STR("path", "/v1/chat?x&y"),
                          INT("status", 200),
                          INT("n", -3),
                          {"cost", 4, AIGW_LOG_FIXED6, NULL, 0, 0.00017}};
  CHECK_EQ_STR(fmt(AIGW_LOG_TEXT, "access", f, 4),
               "2026-12-07T06:30:01.123Z info [main] access path=/v1/chat?x&y status=200 n=-3 "
               "cost=0.000170\n");
  CHECK_EQ_STR(fmt(AIGW_LOG_TEXT, "", f + 1, 1),
               "2026-12-07T06:30:01.123Z info [main] status=200\n");
}

TEST(text_quoting_as_lua) {
  aigw_log_field_t f[] = {STR("s", "two words"),
                          STR("q", "say \"hi\""),
                          STR("e", "a=b"),
                          STR("t", "a\tb"),
                          STR("nl", "a\nb"),
                          STR("empty", ""),
                          STR("d",
                              "\001"
                              "1"),
                          STR("bs", "a b\\")};
  CHECK_EQ_STR(fmt(AIGW_LOG_TEXT, "m", f, 8),
               "2026-12-07T06:30:01.123Z info [main] m s=\"two words\" q=\"say \\\"hi\\\"\" "
               "e=\"a=b\" t=\"a\\9b\" nl=\"a\\nb\" empty=\"\" d=\"\\0011\" bs=\"a b\\\\\"\n");
  /* A control character alone is quoted too: nothing raw reaches the log. */
  aigw_log_field_t g[] = {STR("c", "a\033b\177"), STR("k e=y", "v")};
  CHECK_EQ_STR(fmt(AIGW_LOG_TEXT, "m", g, 2),
               "2026-12-07T06:30:01.123Z info [main] m c=\"a\\27b\\127\" k_e_y=v\n");
}

TEST(text_messages) {
  /* A newline in a message starts an indented continuation: nothing in a
   * message begins a line of its own. Tabs stay; other control bytes are
   * escaped. */
  CHECK_EQ_STR(fmt(AIGW_LOG_TEXT, "boom\nstack traceback:\n\t[C]: in ?", NULL, 0),
               "2026-12-07T06:30:01.123Z info [main] boom\n  stack traceback:\n  \t[C]: in ?\n");
  CHECK_EQ_STR(
      fmt(AIGW_LOG_TEXT, "x\n2026-01-01T00:00:00.000Z error [w1] fake\r\033[31m\0011", NULL, 0),
      "2026-12-07T06:30:01.123Z info [main] x\n  2026-01-01T00:00:00.000Z error [w1] "
      "fake\\13\\27[31m\\0011\n");
  CHECK_EQ_STR(fmt(AIGW_LOG_TEXT, "plain message, 8+ bytes long", NULL, 0),
               "2026-12-07T06:30:01.123Z info [main] plain message, 8+ bytes long\n");
}

TEST(numbers) {
  aigw_log_field_t f[] = {INT("a", 1.5),
                          INT("b", 1e20),
                          INT("c", 9007199254740991.0),
                          {"d", 1, AIGW_LOG_FIXED6, NULL, 0, 1234.5678915},
                          {"e", 1, AIGW_LOG_FIXED6, NULL, 0, 0.0000005},
                          {"f", 1, AIGW_LOG_FIXED6, NULL, 0, 0}};
  CHECK_EQ_STR(fmt(AIGW_LOG_TEXT, "m", f, 6),
               "2026-12-07T06:30:01.123Z info [main] m a=1.5 b=1e+20 c=9007199254740991 "
               "d=1234.567892 e=0.000000 f=0.000000\n");
  char want[64];
  for (int64_t i = -1000; i < 300000; i += (i < 1000 ? 1 : 7)) {
    int64_t v = i < 200000 ? i : i * 1000003;
    aigw_log_field_t x = {"c", 1, AIGW_LOG_INT, NULL, 0, (double)v};
    fmt(AIGW_LOG_TEXT, "", &x, 1);
    snprintf(want, sizeof want, "c=%lld\n", (long long)v);
    if (strcmp(out + 37, want) != 0) {
      CHECK_EQ_STR(out + 37, want);
      break;
    }
  }
  for (int i = 0; i < 20000; i++) {
    double v = (double)i * 0.0000001237 + (double)(i % 7) * 1e-7;
    aigw_log_field_t x = {"c", 1, AIGW_LOG_FIXED6, NULL, 0, v};
    fmt(AIGW_LOG_TEXT, "", &x, 1);
    snprintf(want, sizeof want, "c=%.6f\n", v);
    if (strcmp(out + 37, want) != 0) {
      CHECK_EQ_STR(out + 37, want);
      break;
    }
  }
}

TEST(json_lines) {
  aigw_log_field_t f[] = {STR("request_id", "r1"),
                          INT("status", 200),
                          {"cost", 4, AIGW_LOG_FIXED6, NULL, 0, 0.00017},
                          {"partial", 7, AIGW_LOG_RAW, "true", 4, 0},
                          {"x", 1, AIGW_LOG_RAW, "nan", 3, 0},
                          {"y", 1, AIGW_LOG_RAW, "-0.5", 4, 0},
                          INT("z", NAN)};
  CHECK_EQ_STR(fmt(AIGW_LOG_JSON, "access", f, 7),
               "{\"time\":\"2026-12-07T06:30:01.123Z\",\"level\":\"info\",\"thread\":\"main\","
               "\"msg\":\"access\",\"request_id\":\"r1\",\"status\":200,\"cost\":0.000170,"
               "\"partial\":true,\"x\":\"nan\",\"y\":-0.5,\"z\":\"nan\"}\n");
}

TEST(json_escaping) {
  aigw_log_field_t f[] = {STR("m", "a\"b\\c\nd\re\tf\001g\177"), STR("u", "\xc3\xa9\xe6\xa8\xa1"),
                          STR("bad",
                              "x\xff"
                              "y\xc3"
                              "z\xed\xa0\x80\xf4\x90\x80\x80\xc0\xaf"),
                          STR("k\"\n", "v")};
  CHECK_EQ_STR(fmt(AIGW_LOG_JSON, "line\nbreak", f, 4),
               "{\"time\":\"2026-12-07T06:30:01.123Z\",\"level\":\"info\",\"thread\":\"main\","
               "\"msg\":\"line\\nbreak\",\"m\":\"a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u007f\","
               "\"u\":\"\xc3\xa9\xe6\xa8\xa1\","
               "\"bad\":\"x\\u00ffy\\u00c3z\\u00ed\\u00a0\\u0080\\u00f4\\u0090\\u0080\\u0080"
               "\\u00c0\\u00af\",\"k\\\"\\n\":\"v\"}\n");
}

TEST(bounded) {
  static char big[20000];
  memset(big, '\n', sizeof big);
  aigw_log_field_t f[] = {{"a", 1, AIGW_LOG_STR, big, sizeof big, 0},
                          {"b", 1, AIGW_LOG_STR, big, sizeof big, 0}};
  for (int json = 0; json < 2; json++) {
    char buf[8192];
    aigw_log_format = json ? AIGW_LOG_JSON : AIGW_LOG_TEXT;
    size_t n = aigw__log_format_line(buf, sizeof buf, AIGW_LOG_INFO, big, sizeof big, f, 2);
    aigw_log_format = AIGW_LOG_TEXT;
    CHECK(n <= sizeof buf);
    CHECK(buf[n - 1] == '\n');
    CHECK(memchr(buf, '\n', n - 1) == NULL || !json);
    if (json) CHECK(buf[n - 2] == '}');
  }
}

/* Whatever the sizes, a line stays in its buffer and ends whole. */
TEST(bounded_at_every_size) {
  static char v[400];
  memset(v, '\n', sizeof v);
  aigw_log_field_t f[64];
  for (int i = 0; i < 64; i++) f[i] = (aigw_log_field_t){"key\"", 4, AIGW_LOG_STR, v, 0, 0};
  for (int json = 0; json < 2; json++) {
    for (size_t vl = 0; vl <= sizeof v; vl += 7) {
      for (size_t cap = 256; cap <= 1024; cap++) {
        for (int i = 0; i < 64; i++) f[i].n = vl;
        char buf[1024 + 16];
        memset(buf + cap, 0x5a, 16);
        aigw_log_format = json ? AIGW_LOG_JSON : AIGW_LOG_TEXT;
        size_t n = aigw__log_format_line(buf, cap, AIGW_LOG_INFO, "m", 1, f, 64);
        aigw_log_format = AIGW_LOG_TEXT;
        int ok = n <= cap && buf[n - 1] == '\n' && (!json || buf[n - 2] == '}') &&
                 memchr(buf, '\n', n - 1) == NULL;
        for (int k = 0; k < 16; k++) ok = ok && buf[cap + k] == 0x5a;
        if (!ok) {
          CHECK(ok);
          return;
        }
      }
    }
  }
}

/* A value is quoted exactly when some byte needs it, at any position (the
 * scan goes eight bytes at a time). */
TEST(quoting_at_every_position) {
  static const unsigned char alphabet[] = {'a',  'Z',  '0',  ' ',  '"',  '=',  0x01, 0x1f, 0x20,
                                           0x21, 0x7e, 0x7f, 0x80, 0xa2, 0xbd, 0xff, '\\'};
  unsigned seed = 12345;
  for (int iter = 0; iter < 20000; iter++) {
    char v[40];
    size_t n = 1 + (size_t)(iter % 39);
    int want = 0;
    for (size_t i = 0; i < n; i++) {
      seed = seed * 1103515245u + 12345u;
      /* Mostly plain bytes, so that a single special one is often alone. */
      unsigned k = (seed >> 16) % 64;
      unsigned char c = k < sizeof alphabet ? alphabet[k] : (unsigned char)('a' + k % 26);
      v[i] = (char)c;
      if (c < 0x21 || c == '"' || c == '=' || c == 0x7f) want = 1;
    }
    aigw_log_field_t f = {"v", 1, AIGW_LOG_STR, v, n, 0};
    fmt(AIGW_LOG_TEXT, "", &f, 1);
    int quoted = out[39] == '"';
    if (quoted != want) {
      CHECK_EQ_INT(quoted, want);
      break;
    }
    /* The JSON string against a byte-by-byte reference (no byte of the
     * alphabet starts a UTF-8 sequence: each high one is \u00XX). */
    char ref[400], *r = ref;
    r += sprintf(r, ",\"v\":\"");
    for (size_t i = 0; i < n; i++) {
      unsigned char c = (unsigned char)v[i];
      if (c == '"' || c == '\\') {
        r += sprintf(r, "\\%c", c);
      } else if (c == '\n') {
        r += sprintf(r, "\\n");
      } else if (c >= 0x20 && c < 0x7f) {
        *r++ = (char)c;
      } else {
        r += sprintf(r, "\\u%04x", c);
      }
    }
    sprintf(r, "\"}\n");
    fmt(AIGW_LOG_JSON, "", &f, 1);
    const char *got = strstr(out, ",\"v\":");
    if (got == NULL || strcmp(got, ref) != 0) {
      CHECK_EQ_STR(got, ref);
      break;
    }
  }
}

/* Lines through the writer: all of them, in order, once it stops. */
TEST(writer_loses_nothing) {
  char name[] = "/tmp/aigw-test-log-XXXXXX";
  int fd = mkstemp(name);
  CHECK(fd >= 0);
  unlink(name);
  int saved = dup(2);
  dup2(fd, 2);
  CHECK_EQ_INT(aigw_log_writer_start(), 0);
  for (int i = 0; i < 5000; i++) aigw_log_info("line %d", i);
  aigw_log_writer_stop();
  aigw_log_info("after %d", 1);
  dup2(saved, 2);
  close(saved);
  off_t size = lseek(fd, 0, SEEK_END);
  char *text = malloc((size_t)size + 1);
  CHECK(pread(fd, text, (size_t)size, 0) == size);
  text[size] = 0;
  close(fd);
  int next = 0, after = 0;
  for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n")) {
    char *m = strstr(l, "] ");
    if (m && strncmp(m + 2, "line ", 5) == 0) {
      if (atoi(m + 7) != next) break;
      next++;
    } else if (m && strcmp(m + 2, "after 1") == 0) {
      after = 1;
    }
  }
  CHECK_EQ_INT(next, 5000);
  CHECK(after);
  CHECK_EQ_INT(aigw_log_dropped(), 0);
  free(text);
}

int main(void) {
  RUN(text_prefix_and_plain_values);
  RUN(text_quoting_as_lua);
  RUN(text_messages);
  RUN(numbers);
  RUN(json_lines);
  RUN(json_escaping);
  RUN(bounded);
  RUN(bounded_at_every_size);
  RUN(quoting_at_every_position);
  RUN(writer_loses_nothing);
  return TEST_SUMMARY();
}
