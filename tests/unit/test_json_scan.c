/* test_json_scan.c -- unit tests for core/base/json_scan.c: what is valid JSON
 * and what is not (with where), top-level members found and others not,
 * and the tap keeping one member of an answer fed in any pieces. */
#include "base/json_scan.h"

#include "test.h"

#include <stdlib.h>
#include <string.h>

static const char *const NAMES[] = {"model", "stream", "stream_options"};
static const size_t NLENS[] = {5, 6, 14};

static int scan(const char *text, aigw_json_span_t *spans, char *err) {
  return aigw_json_scan(text, strlen(text), NAMES, NLENS, 3, spans, NULL, err, 160);
}

static int span_is(const char *text, aigw_json_span_t sp, const char *want) {
  if (want == NULL) return sp.start == -1;
  return sp.start >= 0 && (size_t)(sp.end - sp.start) == strlen(want) &&
         memcmp(text + sp.start, want, strlen(want)) == 0;
}

TEST(finds_top_level_members) {
  const char *t =
      " {\"messages\":[{\"model\":\"inner\"}],\"meta\":{\"stream\":false},"
      "\"model\" : \"gpt-4o\", \"stream\":true,\"stream_options\":{\"include_usage\":true}} ";
  aigw_json_span_t sp[3];
  char err[160];
  CHECK_EQ_INT(scan(t, sp, err), 1);
  CHECK(span_is(t, sp[0], "\"gpt-4o\""));
  CHECK(span_is(t, sp[1], "true"));
  CHECK(span_is(t, sp[2], "{\"include_usage\":true}"));
}

TEST(absent_members_and_last_of_repeated) {
  const char *t = "{\"model\":\"a\",\"model\":\"b\",\"x\":[1,2.5e-3,-0,null,false]}";
  aigw_json_span_t sp[3];
  char err[160];
  CHECK_EQ_INT(scan(t, sp, err), 1);
  CHECK(span_is(t, sp[0], "\"b\""));
  CHECK(span_is(t, sp[1], NULL));
  CHECK(span_is(t, sp[2], NULL));
}

TEST(escaped_names_match_as_decoded_and_are_flagged) {
  /* what every JSON reader sees: the last "model", here written escaped */
  const char *t =
      "{\"model\":\"a\",\"mod\\u0065l\":\"x\",\"str\\u0065am\":true,"
      "\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\",\"m\\u00f6del\":1}";
  aigw_json_span_t sp[3];
  char err[160];
  int odd = -1;
  CHECK_EQ_INT(aigw_json_scan(t, strlen(t), NAMES, NLENS, 3, sp, &odd, err, sizeof err), 1);
  CHECK(span_is(t, sp[0], "\"x\""));
  CHECK(span_is(t, sp[1], "true"));
  CHECK_EQ_INT(odd, 1);
  const char *plain = "{\"model\":\"a\",\"stream\":false}";
  CHECK_EQ_INT(aigw_json_scan(plain, strlen(plain), NAMES, NLENS, 3, sp, &odd, err, sizeof err), 1);
  CHECK_EQ_INT(odd, 0);
  const char *twice = "{\"stream\":true,\"stream\":false}";
  CHECK_EQ_INT(aigw_json_scan(twice, strlen(twice), NAMES, NLENS, 3, sp, &odd, err, sizeof err), 1);
  CHECK(span_is(twice, sp[1], "false"));
  CHECK_EQ_INT(odd, 1);
}

TEST(valid_non_objects) {
  aigw_json_span_t sp[3];
  char err[160];
  CHECK_EQ_INT(scan("[1,2]", sp, err), 0);
  CHECK_EQ_INT(scan("\"x\"", sp, err), 0);
  CHECK_EQ_INT(scan(" 12.5 ", sp, err), 0);
  CHECK_EQ_INT(scan("null", sp, err), 0);
  CHECK_EQ_INT(scan("{}", sp, err), 1);
  CHECK_EQ_INT(scan("[]", sp, err), 0);
}

TEST(invalid_texts_say_where) {
  static const struct {
    const char *text, *msg;
  } cases[] = {
      {"", "the JSON text ends early (byte 0): expected a value"},
      {"{\"model\": [}", "invalid JSON at byte 12: expected a value"},
      {"{\"a\":1,}", "invalid JSON at byte 8: expected a member name in quotes"},
      {"{\"a\" 1}", "invalid JSON at byte 6: expected ':'"},
      {"{\"a\":01}", "invalid JSON at byte 7: expected ',' or '}'"},
      {"{\"a\":1.}", "invalid JSON at byte 8: expected a digit after '.'"},
      {"{\"a\":1e}", "invalid JSON at byte 8: expected a digit in the exponent"},
      {"{\"a\":tru}", "invalid JSON at byte 6: expected a value"},
      {"{\"a\":\"x\\q\"}", "invalid JSON at byte 8: expected a valid escape"},
      {"{\"a\":\"\\u12g4\"}", "invalid JSON at byte 7: expected four hex digits after \\u"},
      {"{\"a\":\"x\ny\"}", "invalid JSON at byte 8: expected no control character in a string"},
      {"{\"a\":\"abc", "the JSON text ends early (byte 9): expected the end of a string"},
      {"{\"a\":1} x", "invalid JSON at byte 9: expected the end of the text"},
      {"[1 2]", "invalid JSON at byte 4: expected ',' or ']'"},
      {"{'a':1}", "invalid JSON at byte 2: expected a member name in quotes"},
      {"+1", "invalid JSON at byte 1: expected a value"},
      {"-x", "invalid JSON at byte 2: expected a digit"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    aigw_json_span_t sp[3];
    char err[160] = "";
    CHECK_EQ_INT(scan(cases[i].text, sp, err), -1);
    CHECK_EQ_STR(err, cases[i].msg);
  }
}

TEST(nesting_is_bounded) {
  size_t n = 2100;
  char *t = malloc(n + 1);
  for (size_t i = 0; i < n / 2; i++) t[i] = '[';
  for (size_t i = n / 2; i < n; i++) t[i] = ']';
  t[n] = 0;
  aigw_json_span_t sp[3];
  char err[160];
  CHECK_EQ_INT(scan(t, sp, err), -1);
  CHECK(strstr(err, "at most 1000 levels") != NULL);
  memset(t, 0, n + 1);
  for (size_t i = 0; i < 999; i++) t[i] = '[';
  for (size_t i = 999; i < 1998; i++) t[i] = ']';
  CHECK_EQ_INT(scan(t, sp, err), 0);
  free(t);
}

static const char ANSWER[] =
    "{\"id\":\"x\",\"choices\":[{\"message\":{\"content\":\"the \\\"usage\\\": {1}\","
    "\"tool_calls\":[{\"function\":{\"arguments\":\"{\\\"usage\\\":{}}\"}}]}}],"
    "\"meta\":{\"usage\":{\"nested\":1}},"
    "\"usage\":{\"prompt_tokens\":231,\"completion_tokens\":41,\"details\":{\"cached_tokens\":0},"
    "\"note\":\"}{\"},\"system_fingerprint\":\"fp\"}";
static const char USAGE[] =
    "{\"prompt_tokens\":231,\"completion_tokens\":41,\"details\":{\"cached_tokens\":0},"
    "\"note\":\"}{\"}";

TEST(tap_keeps_the_top_level_member_in_any_pieces) {
  size_t n = strlen(ANSWER);
  for (size_t piece = 1; piece <= n; piece++) {
    aigw_json_tap_t t;
    aigw_json_tap_init(&t, "usage");
    for (size_t at = 0; at < n; at += piece)
      aigw_json_tap_feed(&t, ANSWER + at, at + piece > n ? n - at : piece);
    int ok = t.value.len == strlen(USAGE) && memcmp(t.value.data, USAGE, t.value.len) == 0;
    if (!ok) fprintf(stderr, "piece size %zu: got %.*s\n", piece, (int)t.value.len, t.value.data);
    CHECK(ok);
    aigw_json_tap_free(&t);
  }
}

TEST(tap_without_the_member_or_with_a_non_object_keeps_nothing) {
  const char *texts[] = {"{\"a\":{\"usage\":{\"x\":1}}}", "{\"usage\":null,\"b\":[{}]}",
                         "[{\"usage\":{\"x\":1}}]", "{\"usages\":{\"x\":1}}"};
  for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
    aigw_json_tap_t t;
    aigw_json_tap_init(&t, "usage");
    aigw_json_tap_feed(&t, texts[i], strlen(texts[i]));
    CHECK_EQ_INT(t.value.len, 0);
    aigw_json_tap_free(&t);
  }
}

TEST(tap_gives_up_on_a_huge_member) {
  size_t n = AIGW_JSON_TAP_MAX + 100;
  char *t = malloc(n + 32);
  size_t k = (size_t)sprintf(t, "{\"usage\":{\"x\":\"");
  memset(t + k, 'a', n);
  strcpy(t + k + n, "\"}}");
  aigw_json_tap_t tap;
  aigw_json_tap_init(&tap, "usage");
  aigw_json_tap_feed(&tap, t, strlen(t));
  CHECK_EQ_INT(tap.value.len, 0);
  aigw_json_tap_free(&tap);
  free(t);
}

TEST(numbers_of_named_members) {
  static const char *const names[] = {"prompt_tokens", "total_tokens", "cached_tokens", "absent"};
  static const size_t lens[] = {13, 12, 13, 6};
  double out[4] = {-1, -1, -1, -1};
  const char *u =
      "{\"prompt_tokens\": 231, \"note\":\"\\\"total_tokens\\\":9\",\"total_tokens\":2.72e2,"
      "\"prompt_tokens_details\":{\"cached_tokens\":-0,\"list\":[{\"cached_tokens\":7}]}}";
  aigw_json_numbers(u, strlen(u), names, lens, 4, out);
  CHECK(out[0] == 231);
  CHECK(out[1] == 272);
  CHECK(out[2] == 0);
  CHECK(out[3] == -1);
  /* integers read digit by digit; fractions, exponents and long ones by strtod */
  const char *forms[] = {"{\"prompt_tokens\":-7}",  "{\"prompt_tokens\":1.5}",
                         "{\"prompt_tokens\":2e3}", "{\"prompt_tokens\":12345678901234567}",
                         "{\"prompt_tokens\":0}",   "{\"prompt_tokens\":9007199254740993}"};
  const double want[] = {-7, 1.5, 2000, 12345678901234567.0, 0, 9007199254740993.0};
  for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
    double o[4] = {-1, -1, -1, -1};
    aigw_json_numbers(forms[i], strlen(forms[i]), names, lens, 4, o);
    CHECK(o[0] == want[i]);
  }
  /* garbage finds nothing and reads nothing past the end */
  double g[4] = {-1, -1, -1, -1};
  aigw_json_numbers("{\"prompt_tokens\":", 17, names, lens, 4, g);
  aigw_json_numbers("}}}{\"x", 6, names, lens, 4, g);
  CHECK(g[0] == -1 && g[1] == -1);
}

/* String content is skipped up to sixteen bytes a step: a byte that ends
 * the plain run must stop it at every offset within and across steps. */
TEST(string_runs_stop_at_every_offset) {
  char text[128], err[160];
  aigw_json_span_t sp[3];
  for (int k = 0; k < 48; k++) {
    for (int b = 0; b < 0x20; b++) { /* a control character: refused */
      int len = snprintf(text, sizeof text, "{\"model\":\"%048d\"}", 0);
      text[10 + k] = (char)b;
      CHECK_EQ_INT(aigw_json_scan(text, (size_t)len, NAMES, NLENS, 3, sp, NULL, err, sizeof err),
                   -1);
    }
    const char ok_bytes[] = {' ', '/', 'z', 0x7f};
    for (size_t j = 0; j < sizeof ok_bytes; j++) { /* plain: the whole string is the value */
      int len = snprintf(text, sizeof text, "{\"model\":\"%048d\"}", 0);
      text[10 + k] = ok_bytes[j];
      CHECK_EQ_INT(aigw_json_scan(text, (size_t)len, NAMES, NLENS, 3, sp, NULL, err, sizeof err),
                   1);
      CHECK_EQ_INT(sp[0].end - sp[0].start, 50);
    }
    if (k < 47) { /* an escape: skipped, the string goes on */
      int len = snprintf(text, sizeof text, "{\"model\":\"%048d\"}", 0);
      text[10 + k] = '\\';
      text[11 + k] = 'n';
      CHECK_EQ_INT(aigw_json_scan(text, (size_t)len, NAMES, NLENS, 3, sp, NULL, err, sizeof err),
                   1);
      CHECK_EQ_INT(sp[0].end - sp[0].start, 50);
    }
    { /* a quote: the string ends there, and what follows is not JSON */
      int len = snprintf(text, sizeof text, "{\"model\":\"%048d\"}", 0);
      text[10 + k] = '"';
      CHECK_EQ_INT(aigw_json_scan(text, (size_t)len, NAMES, NLENS, 3, sp, NULL, err, sizeof err),
                   -1);
    }
    if (k < 47) { /* the tap: an escaped quote anywhere in a long string hides no member */
      aigw_json_tap_t t;
      int len = snprintf(text, sizeof text, "{\"id\":\"%048d\",\"usage\":{\"x\":1}}", 0);
      text[7 + k] = '\\';
      text[8 + k] = '"';
      aigw_json_tap_init(&t, "usage");
      aigw_json_tap_feed(&t, text, (size_t)len);
      CHECK(t.value.len == 7 && memcmp(t.value.data, "{\"x\":1}", 7) == 0);
      aigw_json_tap_free(&t);
    }
  }
}

static int node_is(const char *t, aigw_json_node_t m, const char *key, const char *val) {
  if (key == NULL ? m.ks != -1
                  : (m.ks < 0 || (size_t)(m.ke - m.ks) != strlen(key) ||
                     memcmp(t + m.ks, key, strlen(key)) != 0))
    return 0;
  return (size_t)(m.ve - m.vs) == strlen(val) && memcmp(t + m.vs, val, strlen(val)) == 0;
}

TEST(index_lists_values_down_to_a_level) {
  aigw_json_node_t x[16];
  const char *o = " { \"a\" : [1, {\"b\":2}] ,\"c\\n\":\"x\\\"y\",\"a\":null } ";
  CHECK_EQ_INT(aigw_json_index(o, strlen(o), x, 16, 1), 4);
  CHECK(node_is(o, x[0], NULL, "{ \"a\" : [1, {\"b\":2}] ,\"c\\n\":\"x\\\"y\",\"a\":null }"));
  CHECK_EQ_INT(x[0].next, 4);
  CHECK(node_is(o, x[1], "a", "[1, {\"b\":2}]"));
  CHECK_EQ_INT(x[1].next, 2); /* not listed below level 1 */
  CHECK(node_is(o, x[2], "c\\n", "\"x\\\"y\""));
  CHECK(node_is(o, x[3], "a", "null"));
  CHECK_EQ_INT(aigw_json_index(o, strlen(o), x, 16, 3), 7);
  CHECK(node_is(o, x[2], NULL, "1"));
  CHECK(node_is(o, x[3], NULL, "{\"b\":2}"));
  CHECK(node_is(o, x[4], "b", "2"));
  CHECK_EQ_INT(x[1].next, 5);
  CHECK_EQ_INT(x[3].next, 5);
  CHECK_EQ_INT(x[0].parent, -1);
  CHECK_EQ_INT(x[1].parent, 0);
  CHECK_EQ_INT(x[3].parent, 1);
  CHECK_EQ_INT(x[4].parent, 3);
  CHECK_EQ_INT(x[5].parent, 0);
  CHECK(node_is(o, x[6], "a", "null"));
  CHECK_EQ_INT(aigw_json_index("[]", 2, x, 16, 3), 1);
  CHECK_EQ_INT(aigw_json_index(" 12 ", 4, x, 16, 3), 1);
  CHECK(node_is(" 12 ", x[0], NULL, "12"));
  CHECK_EQ_INT(aigw_json_index("[1,2,3]", 7, x, 3, 1), -2);
  CHECK_EQ_INT(aigw_json_index("[1,2,3]", 7, x, 4, 1), 4);
  static const char *const bad[] = {
      "[1,]", "{\"a\":}", "{\"a\" 1}", "[1] x",       "[\"\\q\"]", "[[1]",        "{\"a\":1,}",
      "",     "[01]",     "{1:2}",     "[\"a\x01\"]", "[",         "{\"a\":[1,}", "[[[[1]]]"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK_EQ_INT(aigw_json_index(bad[i], strlen(bad[i]), x, 16, 2), -1);
  /* the nesting bound holds whether the levels are listed or not */
  size_t deep = 1001;
  char *d = malloc(2 * deep);
  memset(d, '[', deep);
  memset(d + deep, ']', deep);
  CHECK_EQ_INT(aigw_json_index(d, 2 * deep, x, 16, 2), -1);
  CHECK_EQ_INT(aigw_json_index(d + 1, 2 * deep - 2, x, 16, 2), 3);
  free(d);
}

/* Strings are skipped eight bytes at a time: a quote, backslash or control
 * character is found at every offset, and bytes above 0x7f are content. */
TEST(string_runs_at_every_offset) {
  char t[64], err[160];
  aigw_json_span_t sp[3];
  for (size_t at = 0; at < 40; at++) {
    static const char stops[] = {'"', '\\', '\x01', '\x1f', '\n'};
    for (size_t k = 0; k < sizeof stops; k++) {
      memset(t, 'a', sizeof t);
      t[0] = '"';
      t[1 + at] = stops[k];
      memcpy(t + 50, "\"", 2); /* ends with a quote and NUL */
      int rc = scan(t, sp, err);
      /* a quote ends the string early (then the text goes on: invalid); a
       * backslash before 'a' is an invalid escape; a control character is refused */
      CHECK_EQ_INT(rc, -1);
    }
    memset(t, 0xc3, sizeof t);
    t[0] = '"';
    memcpy(t + 1 + at, "\"", 2);
    CHECK_EQ_INT(scan(t, sp, err), 0);
  }
}

TEST(escapes_as_lua_cjson_takes_them) {
  static const char *const ok[] = {"\"plain\"", "\"\\u00e9\\n\\\\ud800\"", "\"\\ud83d\\ude00\"",
                                   "\"\\uD83D\\uDE00 \\u0000\"", "\"\\\\\\u0041\""};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
    CHECK_EQ_INT(aigw_json_escapes_ok(ok[i], strlen(ok[i])), 1);
  static const char *const refused[] = {"\"\\ud800\"", "\"\\udc00\\ud800\"", "\"\\ud83d\\u0041\"",
                                        "\"\\ud83d\\n\"", "\"x\\uDBFF\""};
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
    CHECK_EQ_INT(aigw_json_escapes_ok(refused[i], strlen(refused[i])), 0);
}

int main(void) {
  RUN(index_lists_values_down_to_a_level);
  RUN(string_runs_at_every_offset);
  RUN(escapes_as_lua_cjson_takes_them);
  RUN(finds_top_level_members);
  RUN(absent_members_and_last_of_repeated);
  RUN(escaped_names_match_as_decoded_and_are_flagged);
  RUN(valid_non_objects);
  RUN(invalid_texts_say_where);
  RUN(nesting_is_bounded);
  RUN(tap_keeps_the_top_level_member_in_any_pieces);
  RUN(tap_without_the_member_or_with_a_non_object_keeps_nothing);
  RUN(tap_gives_up_on_a_huge_member);
  RUN(numbers_of_named_members);
  RUN(string_runs_stop_at_every_offset);
  return TEST_SUMMARY();
}
