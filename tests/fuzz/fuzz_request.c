/* fuzz_request.c -- the client request path: bytes from a client, in any
 * cuts, through the real connection code (core/http/http_conn.c, the plugin
 * chain, responses) of a worker in this process (gateway.h).
 *
 * Input: byte 1 is flags, then split.h's format: the payload is what the
 * client sends, one piece per write, the loop settling after each. Flags:
 * 1 the client half-closes once it has sent everything; 2 it reads its
 * answers after every piece (else only at the end, as a pipelining client
 * that does not read).
 *
 * The gateway has small limits (2k heads, 8k bodies), long timeouts (no
 * run waits for one), the mock provider (`echo`) and an `openai` provider
 * where nothing listens (a quick 502). Checked, besides ASan and UBSan:
 * - what the client gets reads as HTTP/1.1 responses (llhttp, strict):
 *   status lines, header lines without CR, LF or NUL, framing; every final
 *   response has one x-request-id; no 101; nothing after a response that
 *   said Connection: close;
 * - never more final responses than requests begun (+1 for garbage);
 * - every response the client waited for is complete, unless it half-closed;
 * - the loop settles (no busy loop), and once the client has gone with a
 *   reset, the gateway holds no connection. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "gateway.h"
#include "split.h"

static const char config[] =
    "return {\n"
    "  listen = '127.0.0.1:0', admin_listen = false, workers = 1, log_level = 'error',\n"
    "  server = { max_body_size = '8k', max_header_size = '2k', max_connections = 16,\n"
    "             client_header_timeout = 600, client_body_timeout = 600, keepalive_timeout = "
    "600,\n"
    "             send_timeout = 600, drain_timeout = 1, lua_time_limit = 0, lua_kill_after = 0 "
    "},\n"
    "  plugins = { 'key-auth', 'error-mapping' },\n"
    "  providers = {\n"
    "    mock = { kind = 'mock' },\n"
    "    openai = { kind = 'openai', base_url = 'http://@UPSTREAM@/v1', api_key = 'sk-fuzz',\n"
    "               timeouts = { connect = 600, read = 600, total = 600 } },\n"
    "  },\n"
    "}\n";

/* The header names the gateway writes on these paths. */
static const char *const names[] = {
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "date",
    "cache-control",
    "x-request-id",
    "request-id",
    "allow",
    "retry-after",
    "x-aigw-*",
    "x-ratelimit-*",
    "vary",
    "access-control-*",
    NULL,
};

#define FAIL(...)                      \
  do {                                 \
    fprintf(stderr, "fuzz_request: "); \
    fprintf(stderr, __VA_ARGS__);      \
    fputc('\n', stderr);               \
    abort();                           \
  } while (0)

/* AIGW_FUZZ_SHOW=1: print what the client got (to look at a corpus entry). */
static int show;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  /* The VM's C buffers look leaked while it lives (LuaJIT's arena is not
   * scanned): leaks are checked at exit, once everything is closed. */
  fuzz_default_flag(argc, argv, "-detect_leaks=0");
  show = getenv("AIGW_FUZZ_SHOW") != NULL;
  fgw_start("request", config);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int flags = data[0];
  split_t s;
  split_init(&s, data + 1, size - 1);

  int fd = fgw_connect();
  aigw_buf_t got = {0};
  int closed = 0;
  const uint8_t *p;
  size_t n;
  while (!closed && split_next(&s, &p, &n)) {
    if (fgw_send(fd, p, n) != 0) break;
    fgw_settle();
    if (flags & 2) closed = fgw_recv(fd, &got);
  }
  if (!closed && (flags & 1)) {
    shutdown(fd, SHUT_WR);
    fgw_settle();
  }
  closed |= fgw_recv(fd, &got);

  size_t plen;
  const uint8_t *payload = split_payload(&s, &plen);
  fgw_requests_t reqs;
  fgw_read_requests((const char *)payload, plen, &reqs);
  fgw_responses_t resp;
  fgw_read_responses(got.data, got.len, reqs.heads, reqs.nheads, names, &resp);
  if (show)
    fprintf(stderr,
            "fuzz_request: %d requests begun, %d responses (%d complete, %d interim)%s:\n%.*s\n",
            reqs.begun, resp.responses, resp.complete, resp.interim, closed ? ", closed" : "",
            (int)got.len, got.data);
  if (resp.odd_name[0]) FAIL("a header line the gateway does not write: %s", resp.odd_name);
  if (resp.reason)
    FAIL("bad response stream (%s), %zu bytes: %.*s", resp.reason, got.len,
         (int)(got.len > 600 ? 600 : got.len), got.data);
  if (resp.responses > reqs.begun + 1)
    FAIL("%d responses to %d requests", resp.responses, reqs.begun);
  if (!(flags & 1) && resp.complete != resp.responses)
    FAIL("%d of %d responses cut short (connection %s)", resp.responses - resp.complete,
         resp.responses, closed ? "closed" : "open");

  fgw_close(fd);
  for (int i = 0; i < 4 && fgw_busy(); i++) fgw_settle();
  if (fgw_busy()) fgw_settle_late(200);
  if (fgw_busy()) FAIL("the gateway still holds the connection after the client reset it");
  aigw_buf_free(&got);
  return 0;
}
