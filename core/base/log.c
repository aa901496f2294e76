/* log.c -- the error log (see log.h).
 *
 * A line is formatted into the caller's stack buffer: the time from a
 * per-thread cache of "YYYY-MM-DDTHH:MM:SS" (only milliseconds change within
 * a second), integers by hand. Before the writer starts it is written at
 * once with one write(2), so lines from threads never interleave; once the
 * writer runs it is copied into `pending` under `mu`, and the writer thread
 * swaps `pending` with its own buffer and writes that out with no lock
 * held. The writer owns the second buffer and the sink; workers own
 * nothing here but the copy. */
#include "base/log.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

aigw_log_level_t aigw_log_level = AIGW_LOG_INFO;
aigw_log_format_t aigw_log_format = AIGW_LOG_TEXT;

#define LINE_MAX_BYTES 8192
#define MSG_MAX 1800
#define HIGH_WATER (AIGW_LOG_BUFFER_SIZE / 2)

static const char *const names[] = {"debug", "info", "warn", "error"};
static const unsigned char name_len[] = {5, 4, 4, 5};

/* ---- the per-thread prefix ---------------------------------------------- */

static _Thread_local struct {
  time_t sec;     /* the second `stamp` holds; 0: none yet */
  char stamp[20]; /* "YYYY-MM-DDTHH:MM:SS" */
  char who[12];   /* "main", "w1", ... */
  unsigned char wholen;
} tl;

int aigw_log_level_parse(const char *s) {
  for (int i = 0; i < 4; i++)
    if (strcmp(s, names[i]) == 0) return i;
  return -1;
}

int aigw_log_format_parse(const char *s) {
  if (strcmp(s, "text") == 0) return AIGW_LOG_TEXT;
  if (strcmp(s, "json") == 0) return AIGW_LOG_JSON;
  return -1;
}

static const char digit_pairs[] =
    "00010203040506070809101112131415161718192021222324252627282930"
    "31323334353637383940414243444546474849505152535455565758596061"
    "6263646566676869707172737475767778798081828384858687888990919293"
    "949596979899";

/* Writes v in decimal at w, two digits at a time; returns the end. */
static char *put_u64(char *w, uint64_t v) {
  if (v < 10) {
    *w = (char)('0' + v);
    return w + 1;
  }
  char tmp[20];
  char *t = tmp + sizeof tmp;
  while (v >= 100) {
    t -= 2;
    memcpy(t, digit_pairs + 2 * (v % 100), 2);
    v /= 100;
  }
  if (v >= 10) {
    t -= 2;
    memcpy(t, digit_pairs + 2 * v, 2);
  } else {
    *--t = (char)('0' + v);
  }
  size_t n = (size_t)(tmp + sizeof tmp - t);
  memcpy(w, t, n);
  return w + n;
}

static void put2(char *w, int v) {
  w[0] = (char)('0' + v / 10);
  w[1] = (char)('0' + v % 10);
}

void aigw_log_set_thread_id(int id) {
  if (id == 0) {
    tl.wholen = 0;
    return;
  }
  tl.who[0] = 'w';
  tl.wholen = (unsigned char)(put_u64(tl.who + 1, (uint64_t)(id < 0 ? -id : id)) - tl.who);
}

static void who(const char **p, size_t *n) {
  if (tl.wholen) {
    *p = tl.who;
    *n = tl.wholen;
  } else {
    *p = "main";
    *n = 4;
  }
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 bytes) at w, for sec.nsec or now. */
static char *put_time(char *w, const struct timespec *at) {
  struct timespec ts;
  if (at) {
    ts = *at;
  } else {
    clock_gettime(CLOCK_REALTIME, &ts);
  }
  if (ts.tv_sec != tl.sec || tl.sec == 0) {
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int y = tm.tm_year + 1900;
    put2(tl.stamp, y / 100 % 100);
    put2(tl.stamp + 2, y % 100);
    tl.stamp[4] = '-';
    put2(tl.stamp + 5, tm.tm_mon + 1);
    tl.stamp[7] = '-';
    put2(tl.stamp + 8, tm.tm_mday);
    tl.stamp[10] = 'T';
    put2(tl.stamp + 11, tm.tm_hour);
    tl.stamp[13] = ':';
    put2(tl.stamp + 14, tm.tm_min);
    tl.stamp[16] = ':';
    put2(tl.stamp + 17, tm.tm_sec);
    tl.sec = ts.tv_sec;
  }
  memcpy(w, tl.stamp, 19);
  int ms = (int)(ts.tv_nsec / 1000000);
  w[19] = '.';
  w[20] = (char)('0' + ms / 100);
  w[21] = (char)('0' + ms / 10 % 10);
  w[22] = (char)('0' + ms % 10);
  w[23] = 'Z';
  return w + 24;
}

/* ---- escaping ------------------------------------------------------------- */

/* The length of the valid UTF-8 sequence at p (2 to 4), or 0. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *e) {
  unsigned c = p[0];
  size_t need;
  unsigned lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) {
    need = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    need = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    need = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if ((size_t)(e - p) < need) return 0;
  if (p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < need; i++)
    if (p[i] < 0x80 || p[i] > 0xbf) return 0;
  return need;
}

static const char hexd[] = "0123456789abcdef";

/* 1 for a byte that makes a text value quoted: a control character, a space, '"' or '='. */
static const unsigned char text_special[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* 1 for a byte a JSON string holds as it is: printable ASCII but '"' and '\\'. */
static const unsigned char json_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* A JSON string (RFC 8259): control characters, quotes and backslashes
 * escaped, a byte that is not part of valid UTF-8 written as \u00XX. At most
 * 6 * n + 2 bytes. */
static char *put_json_str(char *w, const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s, *e = p + n;
  *w++ = '"';
  /* Eight bytes at a time while none needs a look: below 0x20, '"', '\\',
   * DEL or any byte of 0x80 and above (UTF-8 is checked byte by byte). */
  const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  for (; e - p >= 8; p += 8, w += 8) {
    uint64_t x;
    memcpy(&x, p, 8);
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\'), del = x ^ (ones * 0x7f);
    if (((((x - ones * 0x20) | (q - ones) | (b - ones) | (del - ones)) & ~x) | x) & highs) break;
    memcpy(w, p, 8);
  }
  while (p < e) {
    if (json_plain[*p]) {
      *w++ = (char)*p++;
      continue;
    }
    unsigned c = *p;
    if (c >= 0x80) {
      size_t k = utf8_seq(p, e);
      if (k) {
        memcpy(w, p, k);
        w += k;
        p += k;
        continue;
      }
    }
    *w++ = '\\';
    switch (c) {
      case '"': *w++ = '"'; break;
      case '\\': *w++ = '\\'; break;
      case '\n': *w++ = 'n'; break;
      case '\r': *w++ = 'r'; break;
      case '\t': *w++ = 't'; break;
      default:
        *w++ = 'u';
        *w++ = '0';
        *w++ = '0';
        *w++ = hexd[c >> 4];
        *w++ = hexd[c & 15];
    }
    p++;
  }
  *w++ = '"';
  return w;
}

static int is_ctl(unsigned c) { return c < 0x20 || c == 0x7f; }

/* Whether a text value must be quoted: empty, or holding a space, a quote,
 * '=' or a control character. */
static int needs_quotes(const char *s, size_t n) {
  if (n == 0) return 1;
  const unsigned char *p = (const unsigned char *)s, *e = p + n;
  /* Eight bytes at a time: any byte below 0x21, or equal to '"', '=' or
   * 0x7f (each test is exact as to whether some byte matches). */
  const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  for (; e - p >= 8; p += 8) {
    uint64_t x;
    memcpy(&x, p, 8);
    uint64_t q = x ^ (ones * '"'), eq = x ^ (ones * '='), del = x ^ (ones * 0x7f);
    uint64_t hit = ((x - ones * 0x21) | (q - ones) | (eq - ones) | (del - ones)) & ~x & highs;
    if (hit) return 1;
  }
  while (p < e)
    if (text_special[*p++]) return 1;
  return 0;
}

/* A text value, quoted as Lua's %q does (a newline as "\n", a control
 * character as \ddd) when it needs to be. At most 4 * n + 2 bytes. */
static char *put_text_value(char *w, const char *s, size_t n) {
  if (!needs_quotes(s, n)) {
    memcpy(w, s, n);
    return w + n;
  }
  *w++ = '"';
  for (size_t i = 0; i < n; i++) {
    unsigned c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      *w++ = '\\';
      *w++ = (char)c;
    } else if (c == '\n') {
      *w++ = '\\';
      *w++ = 'n';
    } else if (is_ctl(c)) {
      *w++ = '\\';
      int next_digit = i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '9';
      if (c >= 100 || next_digit) {
        *w++ = (char)('0' + c / 100);
        *w++ = (char)('0' + c / 10 % 10);
      } else if (c >= 10) {
        *w++ = (char)('0' + c / 10);
      }
      *w++ = (char)('0' + c % 10);
    } else {
      *w++ = (char)c;
    }
  }
  *w++ = '"';
  return w;
}

/* Whether some byte is a control character (below 0x20, or DEL), eight
 * bytes at a time. */
static int has_ctl(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s, *e = p + n;
  const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  for (; e - p >= 8; p += 8) {
    uint64_t x;
    memcpy(&x, p, 8);
    if (((x - ones * 0x20) | ((x ^ (ones * 0x7f)) - ones)) & ~x & highs) return 1;
  }
  while (p < e)
    if (is_ctl(*p++)) return 1;
  return 0;
}

/* A message in text: a newline starts an indented continuation line, so a
 * traceback stays readable and nothing in a message can begin a line of
 * its own; a tab stays; any other control character is written as Lua's
 * \ddd. At most 4 * n bytes. */
static char *put_text_msg(char *w, const char *s, size_t n) {
  if (!has_ctl(s, n)) {
    memcpy(w, s, n);
    return w + n;
  }
  for (size_t i = 0; i < n; i++) {
    unsigned c = (unsigned char)s[i];
    if (c == '\n') {
      memcpy(w, "\n  ", 3);
      w += 3;
    } else if (c == '\t' || !is_ctl(c)) {
      *w++ = (char)c;
    } else {
      *w++ = '\\';
      int next_digit = i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '9';
      if (c >= 100 || next_digit) {
        *w++ = (char)('0' + c / 100);
        *w++ = (char)('0' + c / 10 % 10);
      } else if (c >= 10) {
        *w++ = (char)('0' + c / 10);
      }
      *w++ = (char)('0' + c % 10);
    }
  }
  return w;
}

/* A key in text: anything that would end it or break the line becomes '_'. */
static char *put_text_key(char *w, const char *s, size_t n) {
  if (!needs_quotes(s, n)) {
    memcpy(w, s, n);
    return w + n;
  }
  for (size_t i = 0; i < n; i++) {
    unsigned c = (unsigned char)s[i];
    *w++ = text_special[c] ? '_' : (char)c;
  }
  return w;
}

/* Whether s is a number or literal JSON accepts as it is. */
static int json_number(const char *s, size_t n) {
  if (n == 0) return 0;
  if ((n == 4 && memcmp(s, "true", 4) == 0) || (n == 5 && memcmp(s, "false", 5) == 0)) return 1;
  size_t i = 0;
  if (s[i] == '-') i++;
  if (i == n || s[i] < '0' || s[i] > '9') return 0;
  if (s[i] == '0' && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '9') return 0;
  while (i < n && s[i] >= '0' && s[i] <= '9') i++;
  if (i < n && s[i] == '.') {
    i++;
    if (i == n || s[i] < '0' || s[i] > '9') return 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    if (i == n || s[i] < '0' || s[i] > '9') return 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
  }
  return i == n;
}

/* A number: an integer by hand, anything else as Lua's tostring (%.14g);
 * NaN and infinities as JSON cannot hold them (quoted) in json. At most 32
 * bytes. */
static char *put_num(char *w, double v, int json) {
  if (v == v && v > -9007199254740992.0 && v < 9007199254740992.0 && v == (double)(int64_t)v) {
    int64_t i = (int64_t)v;
    if (i < 0) {
      *w++ = '-';
      i = -i;
    }
    return put_u64(w, (uint64_t)i);
  }
  char tmp[40];
  int k = snprintf(tmp, sizeof tmp, "%.14g", v);
  if (k < 0) k = 0;
  if ((size_t)k >= sizeof tmp) k = (int)sizeof tmp - 1;
  if (json && !isfinite(v)) {
    *w++ = '"';
    memcpy(w, tmp, (size_t)k);
    w += k;
    *w++ = '"';
    return w;
  }
  memcpy(w, tmp, (size_t)k);
  return w + k;
}

/* Six decimals, as "%.6f" writes them. At most 40 bytes. */
static char *put_fixed6(char *w, double v, int json) {
  double m = v * 1e6;
  if (v >= 0 && m < 9.0e15) {
    double r = floor(m + 0.5);
    /* Too near a half for the product's rounding to be trusted: printf. */
    if (fabs(m - floor(m) - 0.5) > 1e-6) {
      uint64_t u = (uint64_t)r;
      w = put_u64(w, u / 1000000);
      *w++ = '.';
      uint64_t f = u % 1000000;
      for (uint64_t d = 100000; d; d /= 10) *w++ = (char)('0' + f / d % 10);
      return w;
    }
  }
  char tmp[40];
  int k = snprintf(tmp, sizeof tmp, "%.6f", v);
  if (k < 0) k = 0;
  if ((size_t)k >= sizeof tmp) k = (int)sizeof tmp - 1;
  int quote = json && !isfinite(v);
  if (quote) *w++ = '"';
  memcpy(w, tmp, (size_t)k);
  w += k;
  if (quote) *w++ = '"';
  return w;
}

/* ---- lines ---------------------------------------------------------------- */

/* The line's prefix: text `TIME LEVEL [WHO] `, json `{"time":...,"msg":` up
 * to the message. At most 96 bytes. */
static char *put_prefix(char *w, aigw_log_level_t level, const struct timespec *at) {
  const char *wp;
  size_t wn;
  who(&wp, &wn);
  if (aigw_log_format == AIGW_LOG_JSON) {
    memcpy(w, "{\"time\":\"", 9);
    w = put_time(w + 9, at);
    memcpy(w, "\",\"level\":\"", 11);
    w += 11;
    memcpy(w, names[level], name_len[level]);
    w += name_len[level];
    memcpy(w, "\",\"thread\":\"", 12);
    w += 12;
    memcpy(w, wp, wn);
    w += wn;
    memcpy(w, "\",\"msg\":", 8);
    return w + 8;
  }
  w = put_time(w, at);
  *w++ = ' ';
  memcpy(w, names[level], name_len[level]);
  w += name_len[level];
  *w++ = ' ';
  *w++ = '[';
  memcpy(w, wp, wn);
  w += wn;
  *w++ = ']';
  *w++ = ' ';
  return w;
}

/* Everything after the prefix, at w; returns the line's end. `end` leaves
 * room for "}\n". */
static char *format_body(char *w, char *end, const char *msg, size_t msglen,
                         const aigw_log_field_t *f, int n) {
  int json = aigw_log_format == AIGW_LOG_JSON;
  if (msglen > MSG_MAX) msglen = MSG_MAX;
  if (json) {
    if ((size_t)(end - w) < 6 * msglen + 2) msglen = (size_t)(end - w - 2) / 6;
    w = put_json_str(w, msg, msglen);
  } else {
    if ((size_t)(end - w) < 4 * msglen) msglen = (size_t)(end - w) / 4;
    w = put_text_msg(w, msg, msglen);
  }
  for (int i = 0; i < n; i++) {
    const aigw_log_field_t *x = &f[i];
    int type = x->type & 0xff;
    size_t klen = x->klen > 64 ? 64 : x->klen;
    size_t vlen = type == AIGW_LOG_STR || type == AIGW_LOG_RAW ? x->n : 0;
    /* Room for the key escaped, its punctuation and a number; what is left
     * (at least 2) bounds a string value. */
    size_t room = (size_t)(end - w);
    if (room < 6 * klen + 8 + 42 + 2) break;
    room -= 6 * klen + 8 + 42;
    if (json) {
      *w++ = ',';
      if (x->type & AIGW_LOG_PLAIN_KEY) {
        *w++ = '"';
        memcpy(w, x->key, klen);
        w += klen;
        *w++ = '"';
      } else {
        w = put_json_str(w, x->key, klen);
      }
      *w++ = ':';
      switch (type) {
        case AIGW_LOG_INT: w = put_num(w, x->num, 1); break;
        case AIGW_LOG_FIXED6: w = put_fixed6(w, x->num, 1); break;
        case AIGW_LOG_RAW:
          if (json_number(x->s, vlen)) {
            if (vlen > 40) vlen = 40;
            memcpy(w, x->s, vlen);
            w += vlen;
            break;
          }
          /* fall through */
        default:
          if (vlen * 6 + 2 > room) vlen = (room - 2) / 6;
          w = put_json_str(w, x->s, vlen);
      }
    } else {
      if (msglen || i) *w++ = ' ';
      if (x->type & AIGW_LOG_PLAIN_KEY) {
        memcpy(w, x->key, klen);
        w += klen;
      } else {
        w = put_text_key(w, x->key, klen);
      }
      *w++ = '=';
      switch (type) {
        case AIGW_LOG_INT: w = put_num(w, x->num, 0); break;
        case AIGW_LOG_FIXED6: w = put_fixed6(w, x->num, 0); break;
        default:
          if (vlen * 4 + 2 > room) vlen = (room - 2) / 4;
          w = put_text_value(w, x->s, vlen);
      }
    }
  }
  if (json) *w++ = '}';
  *w++ = '\n';
  return w;
}

size_t aigw__log_format_line(char *buf, size_t cap, aigw_log_level_t level, const char *msg,
                             size_t msglen, const aigw_log_field_t *f, int n) {
  struct timespec at = {.tv_sec = 1796625001, .tv_nsec = 123000000};
  char *w = put_prefix(buf, level, &at);
  return (size_t)(format_body(w, buf + cap - 2, msg, msglen, f, n) - buf);
}

/* ---- the sink and the writer ---------------------------------------------- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake;
static pthread_t writer;
static atomic_int running;    /* the writer takes lines (read without mu first) */
static char *pending, *spare; /* under mu; spare is the writer's while it writes */
static size_t pending_len;
static uint64_t unreported;  /* dropped since the last "dropped" line */
static int urgent, stopping; /* write now; write all and end */
static int sleeping, idle;   /* the writer waits: with a deadline, or for a first line */
static atomic_uint_fast64_t dropped_total;

static void write_all(const char *p, size_t n) {
  while (n) {
    ssize_t k = write(STDERR_FILENO, p, n);
    if (k > 0) {
      p += k;
      n -= (size_t)k;
    } else if (k < 0 && errno == EINTR) {
      continue;
    } else if (k < 0 && errno == EAGAIN) {
      struct pollfd pfd = {.fd = STDERR_FILENO, .events = POLLOUT};
      poll(&pfd, 1, 100);
    } else {
      return; /* the sink is gone: nothing more to do for this batch */
    }
  }
}

static void emit(aigw_log_level_t level, const char *line, size_t len) {
  if (!atomic_load_explicit(&running, memory_order_acquire)) {
    write_all(line, len);
    return;
  }
  pthread_mutex_lock(&mu);
  if (!atomic_load_explicit(&running, memory_order_relaxed)) {
    pthread_mutex_unlock(&mu);
    write_all(line, len);
    return;
  }
  if (len > AIGW_LOG_BUFFER_SIZE - pending_len) {
    unreported++;
    atomic_fetch_add_explicit(&dropped_total, 1, memory_order_relaxed);
    pthread_mutex_unlock(&mu);
    return;
  }
  memcpy(pending + pending_len, line, len);
  pending_len += len;
  int signal = 0;
  if (level >= AIGW_LOG_WARN || pending_len >= HIGH_WATER) urgent = 1;
  if (sleeping && (idle || urgent)) {
    sleeping = idle = 0;
    signal = 1;
  }
  pthread_mutex_unlock(&mu);
  if (signal) pthread_cond_signal(&wake);
}

static void dropped_line(uint64_t n) {
  char line[256];
  char msg[128];
  int k = snprintf(msg, sizeof msg, "log: %llu line(s) dropped: the log sink did not keep up",
                   (unsigned long long)n);
  if (k < 0) k = 0;
  char *w = put_prefix(line, AIGW_LOG_WARN, NULL);
  w = format_body(w, line + sizeof line - 2, msg, (size_t)k, NULL, 0);
  write_all(line, (size_t)(w - line));
}

/* Waits on `wake` (mu held) until a warn or error line, stop, or one flush
 * period from now. */
static void wait_period(void) {
  struct timespec dl;
  clock_gettime(CLOCK_MONOTONIC, &dl);
  dl.tv_nsec += AIGW_LOG_FLUSH_MS * 1000000L;
  if (dl.tv_nsec >= 1000000000L) {
    dl.tv_sec++;
    dl.tv_nsec -= 1000000000L;
  }
  sleeping = 1;
  while (!urgent && !stopping && pthread_cond_timedwait(&wake, &mu, &dl) != ETIMEDOUT) {}
  sleeping = 0;
}

/* The writer: at most one write per period while lines keep coming; the
 * first line after a whole quiet period is written at once (a worker wakes
 * the writer for it: one signal per quiet spell, not per line). */
static void *writer_main(void *arg) {
  (void)arg;
  memcpy(tl.who, "log", 3);
  tl.wholen = 3;
  int now = 0, quiet = 0;
  pthread_mutex_lock(&mu);
  for (;;) {
    if (pending_len == 0 && unreported == 0) {
      if (stopping) break;
      if (quiet) {
        sleeping = idle = 1;
        while (idle && !stopping) pthread_cond_wait(&wake, &mu);
        sleeping = idle = 0;
        quiet = 0;
      } else {
        wait_period();
        quiet = pending_len == 0 && unreported == 0;
      }
      now = 1;
      continue;
    }
    if (!now && !urgent && !stopping) wait_period();
    now = quiet = 0;
    char *out = pending;
    size_t n = pending_len;
    uint64_t lost = unreported;
    pending = spare;
    pending_len = 0;
    unreported = 0;
    urgent = 0;
    pthread_mutex_unlock(&mu);
    write_all(out, n);
    if (lost) dropped_line(lost);
    pthread_mutex_lock(&mu);
    spare = out;
  }
  atomic_store_explicit(&running, 0, memory_order_release);
  pthread_mutex_unlock(&mu);
  return NULL;
}

int aigw_log_writer_start(void) {
  if (atomic_load(&running)) return 0;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&wake, &ca);
  pthread_condattr_destroy(&ca);
  pending = malloc(AIGW_LOG_BUFFER_SIZE);
  spare = malloc(AIGW_LOG_BUFFER_SIZE);
  if (pending == NULL || spare == NULL) {
    free(pending);
    free(spare);
    pending = spare = NULL;
    return -ENOMEM;
  }
  pending_len = 0;
  stopping = urgent = 0;
  atomic_store(&running, 1);
  int rc = pthread_create(&writer, NULL, writer_main, NULL);
  if (rc != 0) {
    atomic_store(&running, 0);
    free(pending);
    free(spare);
    pending = spare = NULL;
    return -rc;
  }
  return 0;
}

void aigw_log_writer_stop(void) {
  pthread_mutex_lock(&mu);
  if (!atomic_load(&running) || stopping) {
    pthread_mutex_unlock(&mu);
    return;
  }
  stopping = 1;
  pthread_mutex_unlock(&mu);
  pthread_cond_signal(&wake);
  pthread_join(writer, NULL);
  pthread_mutex_lock(&mu);
  free(pending);
  free(spare);
  pending = spare = NULL;
  pending_len = 0;
  stopping = 0;
  pthread_mutex_unlock(&mu);
  pthread_cond_destroy(&wake);
}

void aigw_log_flush(void) {
  if (!atomic_load(&running)) return;
  pthread_mutex_lock(&mu);
  if (pending && pending_len) write_all(pending, pending_len);
  pending_len = 0;
  pthread_mutex_unlock(&mu);
}

uint64_t aigw_log_dropped(void) {
  return (uint64_t)atomic_load_explicit(&dropped_total, memory_order_relaxed);
}

/* ---- entry points ----------------------------------------------------------- */

void aigw_log_fields(aigw_log_level_t level, const char *msg, size_t msglen,
                     const aigw_log_field_t *f, int n) {
  if (level < aigw_log_level) return;
  char line[LINE_MAX_BYTES];
  char *w = put_prefix(line, level, NULL);
  w = format_body(w, line + sizeof line - 2, msg, msglen, f, n);
  emit(level, line, (size_t)(w - line));
}

void aigw_log(aigw_log_level_t level, const char *fmt, ...) {
  if (level < aigw_log_level) return;
  char msg[MSG_MAX + 1];
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (m < 0) m = 0;
  if (m > MSG_MAX) m = MSG_MAX;
  aigw_log_fields(level, msg, (size_t)m, NULL, 0);
}

#define AIGW_EXPORT __attribute__((visibility("default"), used))

/* Whether a line of this level would be written (so that Lua skips making
 * one that would not). */
AIGW_EXPORT int aigw_ffi_log_enabled(int level) { return level >= (int)aigw_log_level; }

/* For lua/aigw/log.lua through the FFI: one message of len bytes, then n
 * fields (n may be 0). */
AIGW_EXPORT void aigw_ffi_log(int level, const char *msg, size_t len) {
  if (level < (int)aigw_log_level) return;
  if (level < AIGW_LOG_DEBUG || level > AIGW_LOG_ERROR) level = AIGW_LOG_ERROR;
  aigw_log_fields((aigw_log_level_t)level, msg, len, NULL, 0);
}

AIGW_EXPORT void aigw_ffi_log_fields(int level, const char *msg, size_t len,
                                     const aigw_log_field_t *f, int n) {
  if (level < (int)aigw_log_level) return;
  if (level < AIGW_LOG_DEBUG || level > AIGW_LOG_ERROR) level = AIGW_LOG_ERROR;
  aigw_log_fields((aigw_log_level_t)level, msg, len, f, n);
}

/* For /metrics: lines dropped so far. */
AIGW_EXPORT double aigw_ffi_log_dropped(void) { return (double)aigw_log_dropped(); }

/* The log format's name, for Lua ("text" or "json"). */
AIGW_EXPORT int aigw_ffi_log_format(void) { return (int)aigw_log_format; }
