/* json_scan.c -- see json_scan.h. */
#include "base/json_scan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 1000

typedef struct {
  const char *p;
  size_t n, i;
  const char *what; /* on error: what was expected */
} scan_t;

static inline void skip_ws(scan_t *s) {
  while (s->i < s->n) {
    char c = s->p[s->i];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
    s->i++;
  }
}

/* Bytes that end a run of plain string content: '"', '\\' and the control
 * characters. One table look-up per byte in the loops below. */
// clang-format off: one row per character class
static const uint8_t STRING_STOP[256] = {
    [0] = 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,         1,
    1,       1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, ['"'] = 1, ['\\'] = 1,
};
// clang-format on

/* Whether any of the eight bytes at p is '"', '\\' or a control character
 * (bytes below 0x20): the classic has-zero and has-less word tests. */
static inline int word_stops(const char *p) {
  const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  uint64_t w;
  memcpy(&w, p, 8);
  uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
  uint64_t hit = ((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w);
  return (hit & highs) != 0;
}

static inline int is_hex(unsigned char c) {
  return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

/* At the opening quote; leaves i past the closing one. */
static int scan_string(scan_t *s) {
  const char *p = s->p;
  size_t i = s->i + 1, n = s->n;
  for (;;) {
    /* The common case, plain bytes: eight at a time, then one by one. */
    while (i + 8 <= n && !word_stops(p + i)) i += 8;
    while (i < n && !STRING_STOP[(unsigned char)p[i]]) i++;
    if (i >= n) {
      s->i = i;
      s->what = "the end of a string";
      return -1;
    }
    unsigned char c = (unsigned char)p[i];
    if (c == '"') {
      s->i = i + 1;
      return 0;
    }
    if (c < 0x20) {
      s->i = i;
      s->what = "no control character in a string";
      return -1;
    }
    /* an escape */
    if (i + 1 >= n) {
      s->i = i;
      s->what = "an escape";
      return -1;
    }
    c = (unsigned char)p[i + 1];
    if (c == 'u') {
      if (i + 5 >= n || !is_hex((unsigned char)p[i + 2]) || !is_hex((unsigned char)p[i + 3]) ||
          !is_hex((unsigned char)p[i + 4]) || !is_hex((unsigned char)p[i + 5])) {
        s->i = i;
        s->what = "four hex digits after \\u";
        return -1;
      }
      i += 6;
    } else if (strchr("\"\\/bfnrt", c) != NULL && c != 0) {
      i += 2;
    } else {
      s->i = i;
      s->what = "a valid escape";
      return -1;
    }
  }
}

static int scan_number(scan_t *s) {
  const char *p = s->p;
  size_t i = s->i, n = s->n;
  if (i < n && p[i] == '-') i++;
  if (i < n && p[i] == '0') {
    i++;
  } else if (i < n && p[i] >= '1' && p[i] <= '9') {
    while (i < n && p[i] >= '0' && p[i] <= '9') i++;
  } else {
    s->what = "a digit";
    s->i = i;
    return -1;
  }
  if (i < n && p[i] == '.') {
    i++;
    if (i >= n || p[i] < '0' || p[i] > '9') {
      s->what = "a digit after '.'";
      s->i = i;
      return -1;
    }
    while (i < n && p[i] >= '0' && p[i] <= '9') i++;
  }
  if (i < n && (p[i] == 'e' || p[i] == 'E')) {
    i++;
    if (i < n && (p[i] == '+' || p[i] == '-')) i++;
    if (i >= n || p[i] < '0' || p[i] > '9') {
      s->what = "a digit in the exponent";
      s->i = i;
      return -1;
    }
    while (i < n && p[i] >= '0' && p[i] <= '9') i++;
  }
  s->i = i;
  return 0;
}

static int scan_literal(scan_t *s, const char *lit, size_t len) {
  if (s->n - s->i < len || memcmp(s->p + s->i, lit, len) != 0) {
    s->what = "a value";
    return -1;
  }
  s->i += len;
  return 0;
}

static int scan_value(scan_t *s, int depth);

static int scan_array(scan_t *s, int depth) {
  s->i++;
  skip_ws(s);
  if (s->i < s->n && s->p[s->i] == ']') {
    s->i++;
    return 0;
  }
  for (;;) {
    if (scan_value(s, depth) != 0) return -1;
    skip_ws(s);
    if (s->i >= s->n) break;
    char c = s->p[s->i++];
    if (c == ']') return 0;
    if (c != ',') {
      s->i--;
      break;
    }
    skip_ws(s);
  }
  s->what = "',' or ']'";
  return -1;
}

static int hexval(unsigned char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

/* Whether the key text k[0, kn) (escapes as written, already checked)
 * names name once decoded: "mod\u0065l" is "model", as every JSON reader
 * sees it. *escaped says whether it was written with escapes. */
static int key_is(const char *k, size_t kn, const char *name, size_t nlen, int *escaped) {
  if (memchr(k, '\\', kn) == NULL) {
    *escaped = 0;
    return kn == nlen && memcmp(k, name, kn) == 0;
  }
  *escaped = 1;
  size_t j = 0;
  for (size_t i = 0; i < kn; j++) {
    unsigned char c = (unsigned char)k[i];
    if (c == '\\') {
      unsigned char e = (unsigned char)k[i + 1];
      if (e == 'u') {
        unsigned cp =
            (unsigned)(hexval((unsigned char)k[i + 2]) << 12 |
                       hexval((unsigned char)k[i + 3]) << 8 | hexval((unsigned char)k[i + 4]) << 4 |
                       hexval((unsigned char)k[i + 5]));
        if (cp >= 0x80) return 0; /* the names looked for are ASCII */
        c = (unsigned char)cp;
        i += 6;
      } else {
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        c = (unsigned char)to[strchr(from, e) - from];
        i += 2;
      }
    } else {
      i++;
    }
    if (j >= nlen || (unsigned char)name[j] != c) return 0;
  }
  return j == nlen;
}

/* An object; at depth 1 its members named in want get their spans. */
typedef struct {
  const char *const *names;
  const size_t *nlens;
  int nnames;
  aigw_json_span_t *spans;
  int odd; /* a wanted member written with escapes, or more than once */
} want_t;

static int scan_object(scan_t *s, int depth, want_t *w) {
  s->i++;
  skip_ws(s);
  if (s->i < s->n && s->p[s->i] == '}') {
    s->i++;
    return 0;
  }
  for (;;) {
    if (s->i >= s->n || s->p[s->i] != '"') {
      s->what = "a member name in quotes";
      return -1;
    }
    size_t ks = s->i + 1;
    if (scan_string(s) != 0) return -1;
    size_t ke = s->i - 1;
    skip_ws(s);
    if (s->i >= s->n || s->p[s->i] != ':') {
      s->what = "':'";
      return -1;
    }
    s->i++;
    skip_ws(s);
    size_t vs = s->i;
    if (scan_value(s, depth) != 0) return -1;
    if (w) {
      for (int k = 0; k < w->nnames; k++) {
        int escaped;
        if (key_is(s->p + ks, ke - ks, w->names[k], w->nlens[k], &escaped)) {
          if (escaped || w->spans[k].start >= 0) w->odd = 1;
          w->spans[k].start = (int32_t)vs;
          w->spans[k].end = (int32_t)s->i;
        }
      }
    }
    skip_ws(s);
    if (s->i >= s->n) break;
    char c = s->p[s->i++];
    if (c == '}') return 0;
    if (c != ',') {
      s->i--;
      break;
    }
    skip_ws(s);
  }
  s->what = "',' or '}'";
  return -1;
}

static int scan_value(scan_t *s, int depth) {
  if (s->i >= s->n) {
    s->what = "a value";
    return -1;
  }
  switch (s->p[s->i]) {
    case '{':
      if (depth >= MAX_DEPTH) break;
      return scan_object(s, depth + 1, NULL);
    case '[':
      if (depth >= MAX_DEPTH) break;
      return scan_array(s, depth + 1);
    case '"': return scan_string(s);
    case 't': return scan_literal(s, "true", 4);
    case 'f': return scan_literal(s, "false", 5);
    case 'n': return scan_literal(s, "null", 4);
    default:
      if (s->p[s->i] == '-' || (s->p[s->i] >= '0' && s->p[s->i] <= '9')) return scan_number(s);
      s->what = "a value";
      return -1;
  }
  s->what = "less nesting (at most 1000 levels)";
  return -1;
}

/* Also called from Lua through the FFI (aigw.request.get_json_fields). */
__attribute__((visibility("default"), used)) int aigw_json_scan(const char *p, size_t n,
                                                                const char *const *names,
                                                                const size_t *nlens, int nnames,
                                                                aigw_json_span_t *spans, int *odd,
                                                                char *err, size_t errlen) {
  scan_t s = {p, n, 0, NULL};
  for (int k = 0; k < nnames; k++) spans[k].start = spans[k].end = -1;
  if (odd) *odd = 0;
  skip_ws(&s);
  int object = s.i < n && p[s.i] == '{';
  int rc;
  if (object) {
    want_t w = {names, nlens, nnames, spans, 0};
    rc = scan_object(&s, 1, &w);
    if (odd) *odd = w.odd;
  } else {
    rc = scan_value(&s, 0);
  }
  if (rc == 0) {
    skip_ws(&s);
    if (s.i != n) {
      s.what = "the end of the text";
      rc = -1;
    }
  }
  if (rc != 0) {
    if (s.i >= n)
      snprintf(err, errlen, "the JSON text ends early (byte %zu): expected %s", n, s.what);
    else snprintf(err, errlen, "invalid JSON at byte %zu: expected %s", s.i + 1, s.what);
    return -1;
  }
  return object;
}

/* --- an index of the values --- */

typedef struct {
  aigw_json_node_t *out;
  int max, count, levels, full;
} index_t;

/* At a value; depth: its container's nesting, level: its own below the root. */
static int index_value(scan_t *s, int depth, int level, index_t *x, int32_t parent, int32_t ks,
                       int32_t ke) {
  if (s->i >= s->n) {
    s->what = "a value";
    return -1;
  }
  int me = x->count;
  if (me >= x->max) {
    x->full = 1;
    return -1;
  }
  x->count++;
  aigw_json_node_t *node = &x->out[me];
  node->ks = ks;
  node->ke = ke;
  node->parent = parent;
  node->vs = (int32_t)s->i;
  char open = s->p[s->i];
  if ((open == '{' || open == '[') && level < x->levels) {
    if (depth >= MAX_DEPTH) {
      s->what = "less nesting (at most 1000 levels)";
      return -1;
    }
    char close = open == '{' ? '}' : ']';
    s->i++;
    skip_ws(s);
    if (s->i < s->n && s->p[s->i] == close) {
      s->i++;
    } else {
      for (;;) {
        int32_t cks = -1, cke = -1;
        if (open == '{') {
          if (s->i >= s->n || s->p[s->i] != '"') return -1;
          cks = (int32_t)s->i + 1;
          if (scan_string(s) != 0) return -1;
          cke = (int32_t)s->i - 1;
          skip_ws(s);
          if (s->i >= s->n || s->p[s->i] != ':') return -1;
          s->i++;
          skip_ws(s);
        }
        if (index_value(s, depth + 1, level + 1, x, me, cks, cke) != 0) return -1;
        skip_ws(s);
        if (s->i >= s->n) return -1;
        char c = s->p[s->i++];
        if (c == close) break;
        if (c != ',') return -1;
        skip_ws(s);
      }
    }
  } else if (scan_value(s, depth) != 0) {
    return -1;
  }
  node = &x->out[me];
  node->ve = (int32_t)s->i;
  node->next = x->count;
  return 0;
}

/* Also called from Lua through the FFI (aigw.engine.protocols.raw). */
__attribute__((visibility("default"), used)) int aigw_json_index(const char *p, size_t n,
                                                                 aigw_json_node_t *out, int max,
                                                                 int levels) {
  scan_t s = {p, n, 0, NULL};
  index_t x = {out, max, 0, levels, 0};
  if (n > INT32_MAX) return -1;
  skip_ws(&s);
  int rc = index_value(&s, 0, 0, &x, -1, -1, -1);
  if (rc == 0) skip_ws(&s);
  if (rc != 0 || s.i != n) return x.full ? -2 : -1;
  return x.count;
}

static int hex4(const char *p, size_t i, size_t n) {
  if (i + 4 > n) return -1;
  int v = 0;
  for (size_t k = i; k < i + 4; k++) {
    if (!is_hex((unsigned char)p[k])) return -1;
    v = v << 4 | hexval((unsigned char)p[k]);
  }
  return v;
}

__attribute__((visibility("default"), used)) int aigw_json_escapes_ok(const char *p, size_t n) {
  const char *e;
  size_t i = 0;
  while (i < n && (e = memchr(p + i, '\\', n - i)) != NULL) {
    i = (size_t)(e - p);
    if (i + 1 >= n) return 1; /* not valid JSON: the scanner says so */
    if (p[i + 1] != 'u') {
      i += 2;
      continue;
    }
    int cp = hex4(p, i + 2, n);
    if (cp < 0) return 1;
    i += 6;
    if ((cp & 0xF800) != 0xD800) continue;
    if (cp & 0x400) return 0; /* a low surrogate first */
    if (i + 1 >= n || p[i] != '\\' || p[i + 1] != 'u') return 0;
    int lo = hex4(p, i + 2, n);
    if (lo < 0 || (lo & 0xFC00) != 0xDC00) return 0;
    i += 6;
  }
  return 1;
}

/* --- numbers of named members --- */

static inline int is_number_byte(unsigned char c) {
  return (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.' || c == 'e' || c == 'E';
}

/* The number that starts at p[v]. Token counts are integers: their digits
 * are read here (exact below 2^53); a fraction or an exponent goes to
 * strtod. */
static double number_at(const char *p, size_t v, size_t n) {
  size_t i = v + (p[v] == '-');
  uint64_t x = 0;
  size_t digits = 0;
  while (i < n && p[i] >= '0' && p[i] <= '9' && digits < 15) {
    x = x * 10 + (uint64_t)(p[i] - '0');
    i++;
    digits++;
  }
  if (digits > 0 && (i >= n || !is_number_byte((unsigned char)p[i])))
    return p[v] == '-' ? -(double)x : (double)x;
  char num[40];
  size_t len = 0;
  while (v + len < n && len < sizeof num - 1 && is_number_byte((unsigned char)p[v + len])) len++;
  memcpy(num, p + v, len);
  num[len] = 0;
  return strtod(num, NULL);
}

__attribute__((visibility("default"), used)) void aigw_json_numbers(const char *p, size_t n,
                                                                    const char *const *names,
                                                                    const size_t *nlens, int nnames,
                                                                    double *out) {
  size_t i = 0, ks = 0, ke = 0;
  int depth = 0, key_next = 0, have_key = 0;
  while (i < n) {
    unsigned char c = (unsigned char)p[i];
    if (c == '"') {
      size_t s0 = ++i;
      while (i < n && p[i] != '"') i += p[i] == '\\' ? 2 : 1;
      if (i >= n) return;
      if (key_next) {
        ks = s0;
        ke = i;
        have_key = 1;
        key_next = 0;
      }
      i++;
      continue;
    }
    if (c == '{') {
      depth++;
      key_next = 1;
      have_key = 0;
    } else if (c == '}') {
      depth--;
      have_key = 0;
    } else if (c == ',') {
      key_next = 1;
      have_key = 0;
    } else if (c == ':' && have_key && depth <= 2) {
      size_t v = i + 1;
      while (v < n && (p[v] == ' ' || p[v] == '\t' || p[v] == '\n' || p[v] == '\r')) v++;
      if (v < n && (p[v] == '-' || (p[v] >= '0' && p[v] <= '9'))) {
        for (int k = 0; k < nnames; k++) {
          if (ke - ks == nlens[k] && memcmp(p + ks, names[k], ke - ks) == 0) {
            out[k] = number_at(p, v, n);
            break;
          }
        }
      }
      have_key = 0;
    } else if (c == '[') {
      depth++;
      key_next = 0;
    } else if (c == ']') {
      depth--;
    }
    if (depth < 0) return;
    i++;
  }
}

/* --- the tap --- */

void aigw_json_tap_init(aigw_json_tap_t *t, const char *name) {
  memset(t, 0, sizeof *t);
  t->name = name;
  t->nlen = (uint8_t)strlen(name);
}

void aigw_json_tap_free(aigw_json_tap_t *t) {
  aigw_buf_free(&t->value);
  aigw_buf_free(&t->cur);
}

/* The value being kept ended (or could not be kept). */
static void tap_done(aigw_json_tap_t *t) {
  if (t->keep && t->cur.len) {
    aigw_buf_t v = t->value;
    t->value = t->cur;
    t->cur = v;
  }
  t->cur.len = 0;
  t->keep = 0;
}

static void tap_keep(aigw_json_tap_t *t, const char *p, size_t n) {
  if (t->cur.len + n > AIGW_JSON_TAP_MAX || aigw_buf_append(&t->cur, p, n) != 0) {
    t->keep = 0;
    t->cur.len = 0;
  }
}

/* A structural walk (strings skipped, depth counted) that assumes the text
 * is valid; a member of the top-level object whose name matches and whose
 * value is an object is kept. */
void aigw_json_tap_feed(aigw_json_tap_t *t, const char *p, size_t n) {
  size_t kept_from = t->keep ? 0 : n; /* bytes of this piece inside the value */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (t->in_str && !t->in_key && !t->esc) {
      /* plain string content: skipped a run at a time */
      while (i < n && !STRING_STOP[(unsigned char)p[i]]) i++;
      if (i >= n) break;
      c = (unsigned char)p[i];
    }
    if (t->in_str) {
      if (t->esc) {
        t->esc = 0;
        t->klen = 0xff; /* an escaped key never matches */
      } else if (c == '\\') {
        t->esc = 1;
      } else if (c == '"') {
        t->in_str = 0;
        if (t->in_key) {
          t->in_key = 0;
          t->key_match = t->klen == t->nlen;
        }
      } else if (t->in_key && t->klen < 0xff) {
        if (t->klen < t->nlen && t->name[t->klen] == (char)c) t->klen++;
        else t->klen = 0xff;
      }
      continue;
    }
    switch (c) {
      case '"':
        t->in_str = 1;
        if (t->depth == 1 && t->key_next) {
          t->in_key = 1;
          t->key_next = 0;
          t->klen = 0;
          t->key_match = 0;
        }
        break;
      case ':':
        if (t->depth == 1) t->want = t->key_match;
        break;
      case ',':
        if (t->depth == 1) {
          t->key_next = 1;
          t->want = 0;
        }
        break;
      case '{':
      case '[':
        t->depth++;
        if (t->depth == 1) {
          t->key_next = c == '{';
        } else if (t->depth == 2 && t->want && c == '{') {
          t->keep = 1;
          t->cur.len = 0;
          kept_from = i;
        }
        break;
      case '}':
      case ']':
        if (t->depth > 0) t->depth--;
        if (t->depth == 1 && t->keep) {
          tap_keep(t, p + kept_from, i + 1 - kept_from);
          tap_done(t);
          kept_from = n;
        }
        if (t->depth == 1) t->want = 0;
        break;
      default: break;
    }
  }
  if (t->keep && kept_from < n) tap_keep(t, p + kept_from, n - kept_from);
}
