/* json_scan.h -- JSON read without building anything.
 *
 * aigw_json_scan validates a whole text (RFC 8259: strings with their
 * escapes, numbers, literals, nesting up to 1000 levels; UTF-8 is not
 * checked, as lua-cjson does not) and, when it is an object, finds the
 * values of the top-level members asked for. The runtime routes a request
 * by its "model" with it, without decoding the body into Lua tables.
 *
 * aigw_json_tap follows an answer as it streams by and keeps the text of
 * one top-level member (the last of that name), e.g. "usage", so that the
 * counts are read without the body ever entering Lua. */
#ifndef AIGW_JSON_SCAN_H
#define AIGW_JSON_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

typedef struct {
  int32_t start, end; /* the value's bytes [start, end); start -1: absent */
} aigw_json_span_t;

/* Returns 1 when p[0, n) is one JSON object (spans filled for names[i] of
 * length nlens[i], names compared as decoded, a repeated member: the last,
 * as JSON readers do; *odd, when given, says whether a wanted member was
 * written with escapes or more than once, so that a caller editing the raw
 * text knows it should not), 0 when it is valid JSON but not an object, -1
 * when it is not valid JSON (err says where and why). */
int aigw_json_scan(const char *p, size_t n, const char *const *names, const size_t *nlens,
                   int nnames, aigw_json_span_t *spans, int *odd, char *err, size_t errlen);

/* The numbers of an object's members named names[i], looked for in the
 * object and one level into the objects it holds (usage objects nest their details:
 * prompt_tokens_details.cached_tokens); out[i] is left as it was for a name
 * not found. For token counts, read without building any Lua table. Safe on
 * any bytes: text that is not JSON finds nothing or part. */
void aigw_json_numbers(const char *p, size_t n, const char *const *names, const size_t *nlens,
                       int nnames, double *out);

/* One value of a JSON text, as aigw_json_index lists them, for a translator
 * that copies the values it passes on unchanged (a raw slice of valid
 * JSON) instead of decoding and encoding them. */
typedef struct {
  int32_t ks, ke; /* a member's name, inside its quotes, as written; -1: an element or the root */
  int32_t vs, ve; /* the value's bytes [vs, ve) */
  int32_t next;   /* the index of the node after this one and its members' */
  int32_t parent; /* the index of its container's node; -1 for the root */
} aigw_json_node_t;

/* Validates p[0, n) as aigw_json_scan does and lists its values in the
 * order of the text, out[0] being the whole, down to `levels` below it: a
 * container at a level above that is followed by its members' (or
 * elements') nodes, out[i + 1] the first, each next one at the previous
 * one's `next`, up to out[i].next (a single loop over the nodes can tell
 * them by `parent`). A repeated name appears each time.
 * Returns the number of nodes; -1 when the text is not valid JSON; -2
 * when it has more than max nodes down to that level. Safe on any bytes. */
int aigw_json_index(const char *p, size_t n, aigw_json_node_t *out, int max, int levels);

/* 1 when every \u escape in p[0, n) (a valid JSON text) is one lua-cjson
 * decodes: a UTF-16 surrogate only as a high one followed by an escaped
 * low one. 0 when lua-cjson would refuse the text ("invalid unicode
 * escape"), so that a fast path that copies raw slices falls back to the
 * decoder, and fails where it fails. Safe on any bytes. */
int aigw_json_escapes_ok(const char *p, size_t n);

#define AIGW_JSON_TAP_MAX 8192 /* a longer member value is not kept */

typedef struct {
  const char *name; /* the member to keep */
  uint8_t nlen;
  uint32_t depth;
  uint8_t in_str : 1, esc : 1, key_next : 1, in_key : 1, key_match : 1, want : 1, keep : 1;
  uint8_t klen;     /* bytes of the key read so far (past nlen: no match) */
  aigw_buf_t value; /* the member's text, once complete (len 0: none) */
  aigw_buf_t cur;   /* the value being read */
} aigw_json_tap_t;

void aigw_json_tap_init(aigw_json_tap_t *t, const char *name);
void aigw_json_tap_feed(aigw_json_tap_t *t, const char *p, size_t n);
void aigw_json_tap_free(aigw_json_tap_t *t);

#endif
