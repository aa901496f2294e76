/* fuzz_upstream.c -- the upstream response path: a hostile provider's
 * bytes, in any cuts, through the real exchange code (core/upstream/upstream.c)
 * of a worker in this process (gateway.h), to a client.
 *
 * Input: byte 1 picks the client's request (REQUESTS below: which path and
 * sink the answer takes), byte 2 is flags, then split.h's format: the
 * payload is the provider's answer, one piece per write, the loop settling
 * after each. Flags: 1 the provider ends with a FIN (else a reset); 2 it
 * reads nothing of the request before answering. A second connection (a
 * retry, the next target of an alias) gets the whole payload at once.
 *
 * The providers (openai, anthropic, gemini kinds) all point at the
 * target's own listening socket, plain HTTP; error-mapping is on, so error
 * answers are held and re-shaped; the alias `fo` fails over between two
 * openai targets (no breaker: an input's outcome must not depend on the
 * ones before it). Paths covered: the plain proxy (pass-through, usage
 * tapped), the proxy with response filters (translated streams, the
 * usage chunk left out), the Lua sink (translated non-stream answers,
 * fetched whole by aigw.http's core), attempts (an alias), and an HTTP/1.0
 * client (close-delimited framing). Checked, besides ASan and UBSan:
 * - the client's bytes read as at most one HTTP/1.1 response (llhttp,
 *   strict), with one x-request-id, and never a 1xx;
 * - once the provider is gone, the client has a complete response or a
 *   closed connection (nothing left hanging);
 * - the loop settles, and once the client has gone the gateway holds no
 *   connection. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "gateway.h"
#include "split.h"

static const char config[] =
    "return {\n"
    "  listen = '127.0.0.1:0', admin_listen = false, workers = 1, log_level = 'error',\n"
    "  server = { max_body_size = '64k', max_header_size = '4k', max_connections = 16,\n"
    "             client_header_timeout = 600, client_body_timeout = 600, keepalive_timeout = "
    "600,\n"
    "             send_timeout = 600, drain_timeout = 1, lua_time_limit = 0, lua_kill_after = 0 "
    "},\n"
    "  plugins = { 'key-auth', 'error-mapping' },\n"
    "  providers = {\n"
    "    mock = { kind = 'mock' },\n"
    "    openai = { kind = 'openai', base_url = 'http://@UPSTREAM@/v1', api_key = 'sk-fuzz',\n"
    "               timeouts = { connect = 600, read = 600, total = 600 }, keepalive = { max_idle "
    "= 4 } },\n"
    "    anthropic = { kind = 'anthropic', base_url = 'http://@UPSTREAM@', api_key = "
    "'sk-ant-fuzz',\n"
    "                  timeouts = { connect = 600, read = 600, total = 600 } },\n"
    "    gemini = { kind = 'gemini', base_url = 'http://@UPSTREAM@', api_key = 'g-fuzz',\n"
    "               timeouts = { connect = 600, read = 600, total = 600 } },\n"
    "  },\n"
    "  routing = { retry = { backoff = 0, max_backoff = 0, max_retry_after = 0 }, breaker = false "
    "},\n"
    "  models = { fo = { targets = { { provider = 'openai', model = 'gpt-a' },\n"
    "                                { provider = 'openai', model = 'gpt-b' } } } },\n"
    "}\n";

#define CHAT(model, extra) \
  "{\"model\":\"" model "\"" extra ",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
#define STREAM ",\"stream\":true"

typedef struct {
  const char *path, *body, *version;
} request_t;

static const request_t REQUESTS[] = {
    {"/v1/chat/completions", CHAT("gpt-4o-mini", ""), "1.1"},     /* proxy, usage tapped */
    {"/v1/chat/completions", CHAT("gpt-4o-mini", STREAM), "1.1"}, /* proxy, usage chunk left out */
    {"/v1/chat/completions", CHAT("claude-3-5-haiku-latest", ""), "1.1"}, /* Lua sink, translated */
    {"/v1/chat/completions", CHAT("claude-3-5-haiku-latest", STREAM),
     "1.1"}, /* filters, translated */
    {"/v1/messages", CHAT("claude-3-5-haiku-latest", ",\"max_tokens\":8" STREAM),
     "1.1"},                                                           /* proxy */
    {"/v1/chat/completions", CHAT("gemini-2.0-flash", ""), "1.1"},     /* Lua sink, translated */
    {"/v1/chat/completions", CHAT("gemini-2.0-flash", STREAM), "1.1"}, /* filters, translated */
    {"/v1/chat/completions", CHAT("fo", ""), "1.1"},                   /* attempts */
    {"/v1/messages", CHAT("gpt-4o-mini", ",\"max_tokens\":8"),
     "1.1"}, /* Lua sink, Anthropic client */
    {"/v1/chat/completions", CHAT("gpt-4o-mini", STREAM),
     "1.0"}, /* close-delimited to the client */
    {"/v1/embeddings", "{\"model\":\"text-embedding-3-small\",\"input\":\"hi\"}", "1.1"},
    {"/v1/chat/completions", CHAT("fo", STREAM), "1.1"}, /* attempts, streamed */
};
#define NREQUESTS (sizeof REQUESTS / sizeof *REQUESTS)

#define FAIL(...)                       \
  do {                                  \
    fprintf(stderr, "fuzz_upstream: "); \
    fprintf(stderr, __VA_ARGS__);       \
    fputc('\n', stderr);                \
    abort();                            \
  } while (0)

static int show;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  /* The VM's C buffers look leaked while it lives (LuaJIT's arena is not
   * scanned): leaks are checked at exit, once everything is closed. */
  fuzz_default_flag(argc, argv, "-detect_leaks=0");
  show = getenv("AIGW_FUZZ_SHOW") != NULL;
  fgw_upstream_listen();
  fgw_start("upstream", config);
  return 0;
}

/* The provider's connections: the first gets the payload piece by piece. */
#define MAX_UP 8
static int ups[MAX_UP];
static int nups;

static void drain(int fd) {
  char buf[16384];
  while (recv(fd, buf, sizeof buf, 0) > 0) {}
}

/* Takes the connections the gateway made; a later one gets the whole
 * payload at once and is ended as the first will be. */
static void take_connections(const uint8_t *payload, size_t plen, int flags, int reading) {
  int fd;
  while (nups < MAX_UP && (fd = fgw_upstream_accept()) >= 0) {
    ups[nups++] = fd;
    if (nups == 1) continue;
    fgw_settle();
    drain(fd);
    if (send(fd, payload, plen, MSG_NOSIGNAL) >= 0) fgw_settle();
    if (flags & 1) {
      shutdown(fd, SHUT_WR);
    } else {
      fgw_close(fd);
      ups[nups - 1] = -1;
    }
    fgw_settle();
  }
  if (reading)
    for (int i = 0; i < nups; i++)
      if (ups[i] >= 0) drain(ups[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  const request_t *rq = &REQUESTS[data[0] % NREQUESTS];
  int flags = data[1];
  split_t s;
  split_init(&s, data + 2, size - 2);
  size_t plen;
  const uint8_t *payload = split_payload(&s, &plen);

  char req[1024];
  int rlen = snprintf(req, sizeof req,
                      "POST %s HTTP/%s\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                      "anthropic-version: 2023-06-01\r\nContent-Length: %zu\r\n\r\n%s",
                      rq->path, rq->version, strlen(rq->body), rq->body);
  int fd = fgw_connect();
  fgw_send(fd, req, (size_t)rlen);
  fgw_settle();
  nups = 0;
  take_connections(payload, plen, flags, !(flags & 2));

  const uint8_t *p;
  size_t n;
  if (nups > 0) {
    while (split_next(&s, &p, &n)) {
      if (send(ups[0], p, n, MSG_NOSIGNAL) < 0) break;
      fgw_settle();
      take_connections(payload, plen, flags, 1);
    }
    if (flags & 1) shutdown(ups[0], SHUT_WR);
    else fgw_close(ups[0]), ups[0] = -1;
    fgw_settle();
    take_connections(payload, plen, flags, 1);
    fgw_settle();
  }

  aigw_buf_t got = {0};
  int closed = fgw_recv(fd, &got);
  fgw_responses_t resp;
  fgw_read_responses(got.data, got.len, NULL, 0, NULL, &resp);
  if (!closed && resp.complete != 1) {
    /* Before calling a response unfinished, give a loaded kernel the time
     * to deliver the provider's end. */
    fgw_settle_late(200);
    closed = fgw_recv(fd, &got);
    fgw_read_responses(got.data, got.len, NULL, 0, NULL, &resp);
  }
  if (show)
    fprintf(
        stderr,
        "fuzz_upstream: %s %s, %d upstream connection(s), %d responses (%d complete)%s:\n%.*s\n",
        rq->path, rq->body, nups, resp.responses, resp.complete, closed ? ", closed" : "",
        (int)got.len, got.data);
  if (resp.reason)
    FAIL("bad response stream (%s), %zu bytes: %.*s", resp.reason, got.len,
         (int)(got.len > 800 ? 800 : got.len), got.data);
  if (resp.interim) FAIL("an interim response reached the client");
  if (resp.responses > 1) FAIL("%d responses to one request", resp.responses);
  /* An HTTP/1.0 response without a length ends with the connection. */
  if (!closed && resp.complete != 1)
    FAIL("the provider is gone and the client has %s",
         resp.responses ? "half a response" : "no response");

  fgw_close(fd);
  fgw_settle();
  for (int i = 0; i < nups; i++)
    if (ups[i] >= 0) fgw_close(ups[i]);
  for (int i = 0; i < 4 && fgw_busy(); i++) fgw_settle();
  if (fgw_busy()) fgw_settle_late(200);
  if (fgw_busy()) FAIL("the gateway still holds the connection after the client reset it");
  /* Pooled connections see their peer gone and are dropped. */
  fgw_settle();
  aigw_buf_free(&got);
  return 0;
}
