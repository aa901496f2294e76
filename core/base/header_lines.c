/* header_lines.c -- the check on header lines, request targets and methods
 * before they are written into a head (see header_lines.h).
 *
 * It runs on every response, so values are scanned eight bytes at a time
 * (the word tests of "Bit Twiddling Hacks": a word has a zero byte when
 * (v - 0x01..) & ~v & 0x80.. is not 0; xor with a repeated byte first to
 * look for that byte) and each line's end is found with memchr. */
#include "base/header_lines.h"

#include <stdint.h>
#include <string.h>

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Not 0 when some byte of v is below b (b <= 0x80). */
static inline uint64_t byte_below(uint64_t v, unsigned b) { return (v - ONES * b) & ~v & HIGHS; }

static inline uint64_t byte_is(uint64_t v, unsigned char b) {
  return byte_below(v ^ (ONES * b), 1);
}

static inline uint64_t load8(const char *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

/* tchar (RFC 9110 5.6.2): ALPHA, DIGIT and !#$%&'*+-.^_`|~ */
// clang-format off: one row per character class
static const uint8_t tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,  ['~'] = 1, ['0'] = 1,
    ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,  ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,  ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1,  ['N'] = 1, ['O'] = 1,
    ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,  ['V'] = 1, ['W'] = 1,
    ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,  ['d'] = 1, ['e'] = 1,
    ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1,  ['l'] = 1, ['m'] = 1,
    ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,  ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};
// clang-format on

static const char BAD_VALUE[] = "CR, LF or NUL in a header value";

/* A value up to its CRLF: the LF was found already, so CR and NUL remain. */
static int has_cr_or_nul(const char *p, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = load8(p + i);
    if (byte_below(v, 1) | byte_is(v, '\r')) return 1;
  }
  for (; i < n; i++)
    if (p[i] == '\r' || p[i] == '\0') return 1;
  return 0;
}

const char *aigw_header_lines_check(const char *p, size_t n) {
  if (n == 0) return NULL;
  const char *end = p + n;
  while (p < end) {
    const char *name = p;
    while (p < end && tchar[(unsigned char)*p]) p++;
    if (p == end) return "a header line does not end in CRLF";
    if (p == name)
      return *p == '\r' || *p == '\n' ? "an empty header line" : "a header line has no name";
    if (*p != ':') return "a header name is not a token";
    p++;
    const char *lf = memchr(p, '\n', (size_t)(end - p));
    if (lf == NULL) return "a header line does not end in CRLF";
    if (lf == p || lf[-1] != '\r' || has_cr_or_nul(p, (size_t)(lf - 1 - p))) return BAD_VALUE;
    p = lf + 1;
  }
  return NULL;
}

const char *aigw_header_value_check(const char *p, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = load8(p + i);
    if (byte_below(v, 1) | byte_is(v, '\r') | byte_is(v, '\n')) return BAD_VALUE;
  }
  for (; i < n; i++)
    if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0') return BAD_VALUE;
  return NULL;
}

const char *aigw_header_path_check(const char *p, size_t n) {
  static const char bad[] = "a space or a control character in the path";
  if (n == 0) return "an empty path";
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = load8(p + i);
    if (byte_below(v, 0x21) | byte_is(v, 0x7f)) return bad;
  }
  for (; i < n; i++)
    if ((unsigned char)p[i] <= 0x20 || p[i] == 0x7f) return bad;
  return NULL;
}

const char *aigw_header_token_check(const char *p, size_t n) {
  if (n == 0) return "an empty method";
  for (size_t i = 0; i < n; i++)
    if (!tchar[(unsigned char)p[i]]) return "the method is not a token";
  return NULL;
}
