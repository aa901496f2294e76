/* test_header_lines.c -- unit tests for core/base/header_lines.c: well-formed
 * blocks pass, every way of adding or ending a line is refused, the word-at-
 * a-time scans agree with a byte-by-byte reference at every position and on
 * random input. */
#include "base/header_lines.h"

#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *lines(const char *s) { return aigw_header_lines_check(s, strlen(s)); }

TEST(valid_blocks) {
  CHECK(lines("") == NULL);
  CHECK(aigw_header_lines_check(NULL, 0) == NULL);
  CHECK(lines("Content-Type: application/json\r\n") == NULL);
  CHECK(lines("a:b\r\nX-Empty:\r\nx-aigw-model: gpt-4o\r\n") == NULL);
  CHECK(lines("X-Tab: a\tb\r\nX-High: \xc3\xa9t\xc3\xa9 \xe6\xa8\xa1\r\n") == NULL);
  CHECK(lines("!#$%&'*+-.^_`|~09AZaz: v\r\n") == NULL);
  CHECK(lines("X-Ctl: \x01\x1b\x7f\r\n") == NULL); /* only CR, LF and NUL end anything */
}

TEST(refused_blocks) {
  CHECK_EQ_STR(lines("X-A: 1\nInjected: yes\r\n"), "CR, LF or NUL in a header value");
  CHECK_EQ_STR(lines("X-A: 1\rInjected: yes\r\n"), "CR, LF or NUL in a header value");
  CHECK_EQ_STR(lines("X-A: 1\r\r\n"), "CR, LF or NUL in a header value");
  CHECK_EQ_STR(lines("X-A:\n"), "CR, LF or NUL in a header value");
  CHECK_EQ_STR(lines("X-A: 1\n"), "CR, LF or NUL in a header value");
  CHECK(aigw_header_lines_check("X-A: 1\0b\r\n", 11) != NULL);
  CHECK_EQ_STR(lines("X-A: 1\r\n\r\nInjected: yes\r\n"), "an empty header line");
  CHECK_EQ_STR(lines("\r\n"), "an empty header line");
  CHECK_EQ_STR(lines("\n"), "an empty header line");
  CHECK_EQ_STR(lines(": x\r\n"), "a header line has no name");
  CHECK_EQ_STR(lines(" X: x\r\n"), "a header line has no name");
  CHECK_EQ_STR(lines("Injected yes\r\n"), "a header name is not a token");
  CHECK_EQ_STR(lines("X A: 1\r\n"), "a header name is not a token");
  CHECK_EQ_STR(lines("X-A : 1\r\n"), "a header name is not a token");
  CHECK_EQ_STR(lines("X\xc3\xa9: 1\r\n"), "a header name is not a token");
  CHECK_EQ_STR(lines("X-A: 1\r\nInjected: yes"), "a header line does not end in CRLF");
  CHECK_EQ_STR(lines("X-A: 1\r\nInjected"), "a header line does not end in CRLF");
  CHECK_EQ_STR(lines("X-A: 1\r"), "a header line does not end in CRLF");
  /* the length given is the block: a NUL-terminated prefix is not enough */
  CHECK(aigw_header_lines_check("X-A: 1\r\nY: 2\r\n", 10) != NULL);
}

TEST(paths_and_methods) {
  CHECK(aigw_header_path_check("/v1/chat/completions", 20) == NULL);
  CHECK(aigw_header_path_check("/v1beta/models/gemini%20x:streamGenerateContent?alt=sse", 55) ==
        NULL);
  CHECK(aigw_header_path_check("/\xc3\xa9", 3) == NULL);
  CHECK(aigw_header_path_check("", 0) != NULL);
  CHECK(aigw_header_path_check("/a b", 4) != NULL);
  CHECK(aigw_header_path_check("/a\tb", 4) != NULL);
  CHECK(aigw_header_path_check("/x HTTP/1.1\r\nInjected: yes", 26) != NULL);
  CHECK(aigw_header_path_check("/a\x7f", 3) != NULL);
  CHECK(aigw_header_path_check("/a\0b", 4) != NULL);
  CHECK(aigw_header_token_check("GET", 3) == NULL);
  CHECK(aigw_header_token_check("M-SEARCH", 8) == NULL);
  CHECK(aigw_header_token_check("", 0) != NULL);
  CHECK(aigw_header_token_check("GET /", 5) != NULL);
  CHECK(aigw_header_token_check("GET\r\n", 5) != NULL);
  CHECK(aigw_header_value_check("OK", 2) == NULL);
  CHECK(aigw_header_value_check("", 0) == NULL);
  CHECK(aigw_header_value_check("Bad\nGateway", 11) != NULL);
}

/* References, a byte at a time. */
static int ref_value_ok(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0') return 0;
  return 1;
}

static int ref_path_ok(const char *p, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] == 0x7f) return 0;
  return 1;
}

/* One bad byte at every position of values of every length up to 40 (the
 * word scan's blocks and its tail), and each byte value. */
TEST(every_position_and_byte) {
  char value[64], line[96];
  for (size_t n = 1; n <= 40; n++) {
    for (size_t at = 0; at < n; at++) {
      for (int b = 0; b < 256; b++) {
        memset(value, 'v', n);
        value[at] = (char)b;
        int vok = ref_value_ok(value, n);
        CHECK_EQ_INT(aigw_header_value_check(value, n) == NULL, vok);
        CHECK_EQ_INT(aigw_header_path_check(value, n) == NULL, ref_path_ok(value, n));
        memcpy(line, "X-A: ", 5);
        memcpy(line + 5, value, n);
        memcpy(line + 5 + n, "\r\n", 2);
        CHECK_EQ_INT(aigw_header_lines_check(line, n + 7) == NULL, vok);
      }
    }
  }
}

/* Random blocks over a small alphabet rich in the bytes that matter,
 * against a reference that splits on CRLF. */
static int ref_lines_ok(const char *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t s = i;
    while (i < n && p[i] != ':' && p[i] != '\r' && p[i] != '\n') {
      unsigned char c = (unsigned char)p[i];
      int t = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c && strchr("!#$%&'*+-.^_`|~", c));
      if (!t) return 0;
      i++;
    }
    if (i == s || i == n || p[i] != ':') return 0;
    i++;
    while (i < n && p[i] != '\r' && p[i] != '\n' && p[i] != '\0') i++;
    if (i + 1 >= n || p[i] != '\r' || p[i + 1] != '\n') return 0;
    i += 2;
  }
  return 1;
}

TEST(random_blocks_agree_with_the_reference) {
  static const char alphabet[] = {'a', 'B', '-', ':', ' ', '\r', '\n', '\0', '\t', '\x80', '\xff'};
  char buf[64];
  srand(7);
  int valid = 0;
  for (int k = 0; k < 200000; k++) {
    size_t n = (size_t)(rand() % 40);
    for (size_t i = 0; i < n; i++) buf[i] = alphabet[rand() % (int)sizeof alphabet];
    /* often a well-formed start, so that valid blocks are common too */
    if (n > 8 && rand() % 2) {
      memcpy(buf, "X-A: ", 5);
      memcpy(buf + n - 2, "\r\n", 2);
    }
    int want = ref_lines_ok(buf, n);
    valid += want;
    CHECK_EQ_INT(aigw_header_lines_check(buf, n) == NULL, want);
  }
  CHECK(valid > 1000);
}

int main(void) {
  RUN(valid_blocks);
  RUN(refused_blocks);
  RUN(paths_and_methods);
  RUN(every_position_and_byte);
  RUN(random_blocks_agree_with_the_reference);
  return TEST_SUMMARY();
}
