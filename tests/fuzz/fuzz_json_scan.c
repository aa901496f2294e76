/* fuzz_json_scan.c -- core/base/json_scan.c on any bytes.
 *
 * Input: split.h's format; the payload is the JSON text, the cuts are where
 * the incremental tap (aigw_json_tap_*) gets its pieces. Checked:
 *
 * - aigw_json_scan answers -1, 0 or 1, with an error message on -1, 1 only
 *   for text whose first non-blank byte is '{', and spans inside the text
 *   that are themselves valid JSON;
 * - a valid text stays valid, with the span where it was put, once wrapped
 *   as a member value ({"model": TEXT}) and as an array element;
 * - aigw_json_numbers reads within the text and leaves a count alone when
 *   its name is nowhere in the text;
 * - the tap keeps the same member whatever the cuts (compared with the
 *   payload fed whole), and on a valid object whose "usage" member is an
 *   object written once and plainly, keeps exactly that member's text.
 *
 * A failed check aborts (a finding). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json_scan.h"
#include "fuzz.h"
#include "split.h"

#define NNAMES 5
static const char *const names[NNAMES] = {"model", "usage", "stream", "messages", ""};
static const size_t nlens[NNAMES] = {5, 5, 6, 8, 0};

#define FAIL(...)                        \
  do {                                   \
    fprintf(stderr, "fuzz_json_scan: "); \
    fprintf(stderr, __VA_ARGS__);        \
    fputc('\n', stderr);                 \
    abort();                             \
  } while (0)

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int scan(const char *p, size_t n, aigw_json_span_t *spans, int *odd) {
  char err[160];
  err[0] = '\x7f';
  int rc = aigw_json_scan(p, n, names, nlens, NNAMES, spans, odd, err, sizeof err);
  if (rc < -1 || rc > 1) FAIL("aigw_json_scan returned %d", rc);
  if (rc == -1 && (err[0] == '\x7f' || err[0] == '\0' || memchr(err, 0, sizeof err) == NULL))
    FAIL("aigw_json_scan failed without a message");
  return rc;
}

static void check_scan(const char *p, size_t n) {
  aigw_json_span_t spans[NNAMES];
  int odd = -1;
  int rc = scan(p, n, spans, &odd);
  size_t first = 0;
  while (first < n && is_ws(p[first])) first++;
  if (rc == 1 && p[first] != '{') FAIL("an object that does not start with '{'");
  if (rc == 0 && first < n && p[first] == '{')
    FAIL("a valid text starting with '{' is not an object");
  if (odd != 0 && odd != 1) FAIL("odd not set");
  for (int k = 0; k < NNAMES; k++) {
    if (rc != 1) {
      /* On an error, members read before it may have spans. */
      if (rc == 0 && spans[k].start != -1) FAIL("a span in a text that is not an object");
      continue;
    }
    if (spans[k].start == -1) continue;
    if (spans[k].start < 0 || spans[k].end < spans[k].start || (size_t)spans[k].end > n)
      FAIL("span %d [%d, %d) outside the text of %zu bytes", k, spans[k].start, spans[k].end, n);
    aigw_json_span_t inner[NNAMES];
    int iodd;
    if (scan(p + spans[k].start, (size_t)(spans[k].end - spans[k].start), inner, &iodd) < 0)
      FAIL("the value of member %s is not valid JSON on its own", names[k]);
  }
  /* The index agrees with the scan on what is valid, and each node is a
   * valid value inside its container. */
  static aigw_json_node_t nodes[64];
  int nn = aigw_json_index(p, n, nodes, 64, 3);
  if (nn == -1 ? rc != -1 : nn != -2 && (nn < 1 || rc == -1))
    FAIL("aigw_json_index answered %d where the scan answered %d", nn, rc);
  for (int i = 1; i < nn; i++) {
    aigw_json_node_t *x = &nodes[i], *up = &nodes[x->parent];
    if (x->parent < 0 || x->parent >= i || x->next <= i || x->next > up->next || x->vs < up->vs ||
        x->ve > up->ve || x->vs >= x->ve)
      FAIL("node %d out of its container's bounds", i);
    aigw_json_span_t sp[NNAMES];
    if (scan(p + x->vs, (size_t)(x->ve - x->vs), sp, NULL) < 0)
      FAIL("node %d is not valid JSON on its own", i);
  }
  (void)aigw_json_escapes_ok(p, n);
  if (rc < 0 || n > 1 << 20) return;

  /* Wrapped as a member value and as an array element. */
  static const char pre[] = "{\"model\":", post[] = "}";
  char *w = malloc(n + sizeof pre + sizeof post + 2);
  memcpy(w, pre, sizeof pre - 1);
  memcpy(w + sizeof pre - 1, p, n);
  memcpy(w + sizeof pre - 1 + n, post, sizeof post - 1);
  size_t wn = sizeof pre - 1 + n + sizeof post - 1;
  aigw_json_span_t ws[NNAMES];
  if (scan(w, wn, ws, &odd) != 1) FAIL("a valid value is not valid as a member's value");
  size_t last = n;
  while (last > 0 && is_ws(p[last - 1])) last--;
  if (ws[0].start != (int32_t)(sizeof pre - 1 + first) ||
      ws[0].end != (int32_t)(sizeof pre - 1 + last))
    FAIL("the member's span [%d, %d) is not where the value was put [%zu, %zu)", ws[0].start,
         ws[0].end, sizeof pre - 1 + first, sizeof pre - 1 + last);
  if (odd) FAIL("a member written once and plainly is odd");
  w[0] = '[';
  w[1] = ' ';
  memcpy(w + 2, p, n);
  w[n + 2] = ']';
  if (scan(w, n + 3, ws, &odd) != 0) FAIL("a valid value is not valid in an array");
  free(w);
}

static void check_numbers(const char *p, size_t n) {
  static const char *const cnames[3] = {"prompt_tokens", "completion_tokens", "total_tokens"};
  static const size_t clens[3] = {13, 17, 12};
  double out[3] = {-7, -7, -7};
  /* A copy of exactly n bytes, so that ASan sees any read past the end. */
  char *copy = malloc(n ? n : 1);
  memcpy(copy, p, n);
  aigw_json_numbers(copy, n, cnames, clens, 3, out);
  for (int k = 0; k < 3; k++) {
    if (out[k] != -7 && memmem(p, n, cnames[k], clens[k]) == NULL)
      FAIL("a count for %s, which is not in the text", cnames[k]);
  }
  free(copy);
}

/* The tap's kept value, fed piece by piece (copies of exactly each piece). */
static void tap_run(const uint8_t *data, size_t size, int whole, aigw_buf_t *out) {
  split_t s;
  split_init(&s, data, size);
  aigw_json_tap_t t;
  aigw_json_tap_init(&t, "usage");
  const uint8_t *p;
  size_t n;
  if (whole) {
    p = split_payload(&s, &n);
    char *copy = malloc(n ? n : 1);
    memcpy(copy, p, n);
    aigw_json_tap_feed(&t, copy, n);
    free(copy);
  } else {
    while (split_next(&s, &p, &n)) {
      char *copy = malloc(n);
      memcpy(copy, p, n);
      aigw_json_tap_feed(&t, copy, n);
      free(copy);
    }
  }
  if (t.value.len > AIGW_JSON_TAP_MAX) FAIL("the tap kept %zu bytes", t.value.len);
  out->len = 0;
  if (t.value.len) aigw_buf_append(out, t.value.data, t.value.len);
  aigw_json_tap_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  split_t s;
  split_init(&s, data, size);
  size_t n;
  const char *p = (const char *)split_payload(&s, &n);
  /* The scanner's spans are 32-bit: texts past 2 GiB are not its input. */
  check_scan(p, n);
  check_numbers(p, n);

  aigw_buf_t whole = {0}, cut = {0};
  tap_run(data, size, 1, &whole);
  tap_run(data, size, 0, &cut);
  if (whole.len != cut.len || (whole.len && memcmp(whole.data, cut.data, whole.len) != 0))
    FAIL("the tap kept %zu bytes fed whole and %zu bytes fed in pieces", whole.len, cut.len);

  aigw_json_span_t spans[NNAMES];
  int odd;
  if (scan(p, n, spans, &odd) == 1 && !odd) {
    aigw_json_span_t u = spans[1];
    if (u.start >= 0 && p[u.start] == '{' && (size_t)(u.end - u.start) <= AIGW_JSON_TAP_MAX) {
      if (whole.len != (size_t)(u.end - u.start) || memcmp(whole.data, p + u.start, whole.len) != 0)
        FAIL("the tap kept %zu bytes, the usage member has %d", whole.len, u.end - u.start);
    } else if (u.start < 0 && whole.len != 0) {
      FAIL("the tap kept %zu bytes of an object without a usage member", whole.len);
    }
  }
  aigw_buf_free(&whole);
  aigw_buf_free(&cut);
  return 0;
}
