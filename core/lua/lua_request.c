/* lua_request.c -- the request as the FFI sees it (lua/aigw/request.lua).
 *
 * These are exported for ffi.C: each takes the request pointer from the
 * coroutine's exdata and answers through an out-pointer, without allocating
 * or copying. A returned span points into the connection's buffers and is
 * valid while the request lives; Lua turns it into a string at once. */
#include <arpa/inet.h>
#include <lauxlib.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "http/http_conn.h"
#include "lua/lthread.h"
#include "lua/lua_vm.h"

typedef struct {
  const char *p;
  size_t n;
} aigw_str_t;

#define AIGW_EXPORT __attribute__((visibility("default"), used))

AIGW_EXPORT int aigw_ffi_req_method(aigw_req_t *r, aigw_str_t *out) {
  out->p = llhttp_method_name((llhttp_method_t)r->method);
  out->n = strlen(out->p);
  return 0;
}

AIGW_EXPORT int aigw_ffi_req_path(aigw_req_t *r, aigw_str_t *out) {
  out->p = r->conn->rbuf + r->url;
  out->n = r->path_len;
  return 0;
}

AIGW_EXPORT int aigw_ffi_req_query(aigw_req_t *r, aigw_str_t *out) {
  if (r->path_len >= r->url_len) return 0;
  out->p = r->conn->rbuf + r->url + r->path_len + 1;
  out->n = r->url_len - r->path_len - 1;
  return 1;
}

AIGW_EXPORT int aigw_ffi_req_header(aigw_req_t *r, const char *name, size_t nlen, aigw_str_t *out) {
  return aigw_req_find_header(r, name, nlen, &out->p, &out->n);
}

AIGW_EXPORT int aigw_ffi_req_header_count(aigw_req_t *r) { return r->nhdrs; }

AIGW_EXPORT int aigw_ffi_req_header_at(aigw_req_t *r, int i, aigw_str_t *name, aigw_str_t *value) {
  if (i < 0 || i >= r->nhdrs) return 0;
  const aigw_hdr_t *h = &r->hdrs[i];
  name->p = r->conn->rbuf + h->name;
  name->n = h->name_len;
  value->p = r->conn->rbuf + h->value;
  value->n = h->value_len;
  return 1;
}

AIGW_EXPORT int aigw_ffi_req_body(aigw_req_t *r, aigw_str_t *out) {
  out->p = r->body.data ? r->body.data : "";
  out->n = r->body.len;
  return 0;
}

AIGW_EXPORT int aigw_ffi_req_id(aigw_req_t *r, aigw_str_t *out) {
  out->p = r->id;
  out->n = r->id_len;
  return 0;
}

AIGW_EXPORT int aigw_ffi_req_is_loopback(aigw_req_t *r) { return r->conn->loopback; }

/* The client's address as text ("127.0.0.1", "::1") and its port. */
AIGW_EXPORT int aigw_ffi_req_client_addr(aigw_req_t *r, char *buf, size_t len, int *port) {
  const struct sockaddr *sa = (const struct sockaddr *)&r->conn->peer;
  *port = 0;
  if (sa->sa_family == AF_INET) {
    *port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    *port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
  } else {
    return 0;
  }
  return uv_ip_name(sa, buf, len) == 0;
}

/* 1 when errors for this request use Anthropic's envelope (/messages paths). */
AIGW_EXPORT int aigw_ffi_req_is_anthropic(aigw_req_t *r) { return r->anthropic; }

AIGW_EXPORT int aigw_ffi_req_is_admin(aigw_req_t *r) { return r->conn->admin; }

AIGW_EXPORT double aigw_ffi_req_start_time(aigw_req_t *r) { return (double)r->start_ms / 1000.0; }

/* aigw.response.filter_body(): this request's body goes through the
 * body_filter phase (when the generation has one). */
AIGW_EXPORT int aigw_ffi_req_filter_body(aigw_req_t *r) {
  /* A detached request (specs) has no generation: the spec helper says. */
  if (r->lt ? r->lt->gen->body_filter_ref == LUA_NOREF : !r->can_filter_body) return 0;
  r->filter_body = r->plugin_body = 1;
  r->observe_body = 0;
  return 1;
}

/* The runtime's own filters for this request (format translation, usage):
 * AIGW_FILTER_HEADERS runs header_filter on the response head;
 * AIGW_FILTER_BODY the body through body_filter; AIGW_FILTER_OBSERVE lets
 * body_filter see the body while the original bytes (and framing) go out,
 * unless a plugin asks for filter_body() too; AIGW_FILTER_ERRORS runs
 * header_filter on the answer about to be made when some plugin filters
 * upstream errors (an upstream error the runtime fetched itself);
 * AIGW_FILTER_USAGE with OBSERVE: the core follows a JSON answer itself and
 * calls body_filter once, at its end, with its top-level "usage" member
 * (see core/base/json_scan.h). Returns 0 when the generation has no such phase. */
enum {
  AIGW_FILTER_HEADERS = 1,
  AIGW_FILTER_BODY = 2,
  AIGW_FILTER_OBSERVE = 4,
  AIGW_FILTER_ERRORS = 8,
  AIGW_FILTER_USAGE = 16
};

AIGW_EXPORT int aigw_ffi_req_filter(aigw_req_t *r, int what) {
  if (r->lt == NULL) return 0;
  const aigw_gen_t *g = r->lt->gen;
  if ((what & AIGW_FILTER_HEADERS) && g->header_filter_ref == LUA_NOREF) return 0;
  if ((what & (AIGW_FILTER_BODY | AIGW_FILTER_OBSERVE)) && g->body_filter_ref == LUA_NOREF)
    return 0;
  if (what & AIGW_FILTER_HEADERS) r->filter_headers = 1;
  if ((what & AIGW_FILTER_ERRORS) && r->filter_errors) r->filter_headers = 1;
  if (what & AIGW_FILTER_BODY) {
    r->filter_body = 1;
    r->observe_body = 0;
  } else if ((what & AIGW_FILTER_OBSERVE) && !r->filter_body) {
    r->filter_body = r->observe_body = 1;
    r->tap_usage = (what & AIGW_FILTER_USAGE) != 0;
  }
  return 1;
}

/* The response filter flags as one number (bits below), so that the failover loop can give each attempt
 * the flags the request had before the first: set < 0 only reads. */
enum { FS_HEADERS = 1, FS_BODY = 2, FS_OBSERVE = 4, FS_PLUGIN = 8, FS_TAP = 16, FS_ERRORS = 32 };

AIGW_EXPORT int aigw_ffi_req_filter_state(aigw_req_t *r, int set) {
  int now = (r->filter_headers ? FS_HEADERS : 0) | (r->filter_body ? FS_BODY : 0) |
            (r->observe_body ? FS_OBSERVE : 0) | (r->plugin_body ? FS_PLUGIN : 0) |
            (r->tap_usage ? FS_TAP : 0) | (r->filter_errors ? FS_ERRORS : 0);
  if (set >= 0) {
    r->filter_headers = (set & FS_HEADERS) != 0;
    r->filter_body = (set & FS_BODY) != 0;
    r->observe_body = (set & FS_OBSERVE) != 0;
    r->plugin_body = (set & FS_PLUGIN) != 0;
    r->tap_usage = (set & FS_TAP) != 0;
    r->filter_errors = (set & FS_ERRORS) != 0;
  }
  return now;
}

/* Header lines added to every response head of this request (which
 * target answered). The caller keeps the string alive (in ctx). */
AIGW_EXPORT void aigw_ffi_req_resp_lines(aigw_req_t *r, const char *p, size_t n) {
  r->resp_lines = n ? p : NULL;
  r->resp_lines_len = (uint32_t)n;
}

AIGW_EXPORT double aigw_ffi_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

AIGW_EXPORT double aigw_ffi_monotonic(void) { return (double)uv_hrtime() / 1e9; }

/* The access line (plugins/access-log.lua): one info line `access` whose
 * request id, method, path and time since the request arrived come from
 * the request itself and the rest from the caller. A number that is NaN is
 * a field left out, as is a NULL string; consumer is a number, or a string
 * when consumer_s is not NULL. Formatted here, in the log's format, with
 * nothing allocated. */
AIGW_EXPORT void aigw_ffi_log_access(aigw_req_t *r, double status, const char *provider,
                                     size_t provider_n, const char *model, size_t model_n,
                                     double attempts, double consumer, const char *consumer_s,
                                     size_t consumer_n, double prompt_tokens,
                                     double completion_tokens, double total_tokens,
                                     double cached_tokens, double reasoning_tokens,
                                     double cache_creation_tokens, int partial, double cost) {
  if (aigw_log_level > AIGW_LOG_INFO) return;
  static const struct {
    const char *name;
    size_t len;
  } usage_names[6] = {{"prompt_tokens", 13},    {"completion_tokens", 17},
                      {"total_tokens", 12},     {"cached_tokens", 13},
                      {"reasoning_tokens", 16}, {"cache_creation_tokens", 21}};
  double usage[6] = {prompt_tokens, completion_tokens, total_tokens,
                     cached_tokens, reasoning_tokens,  cache_creation_tokens};
  aigw_log_field_t f[17];
  int n = 0;
  enum { K = AIGW_LOG_PLAIN_KEY };
  const char *method = llhttp_method_name((llhttp_method_t)r->method);
  f[n++] = (aigw_log_field_t){"request_id", 10, AIGW_LOG_STR | K, r->id, r->id_len, 0};
  f[n++] = (aigw_log_field_t){"method", 6, AIGW_LOG_STR | K, method, strlen(method), 0};
  f[n++] = (aigw_log_field_t){"path", 4, AIGW_LOG_STR | K, r->conn->rbuf + r->url, r->path_len, 0};
  if (status == status) f[n++] = (aigw_log_field_t){"status", 6, AIGW_LOG_INT | K, NULL, 0, status};
  double ms = floor((double)uv_hrtime() / 1e6 - (double)r->start_ms + 0.5);
  f[n++] = (aigw_log_field_t){"ms", 2, AIGW_LOG_INT | K, NULL, 0, ms};
  if (provider)
    f[n++] = (aigw_log_field_t){"provider", 8, AIGW_LOG_STR | K, provider, provider_n, 0};
  if (model) f[n++] = (aigw_log_field_t){"model", 5, AIGW_LOG_STR | K, model, model_n, 0};
  if (attempts == attempts)
    f[n++] = (aigw_log_field_t){"attempts", 8, AIGW_LOG_INT | K, NULL, 0, attempts};
  if (consumer_s) {
    f[n++] = (aigw_log_field_t){"consumer", 8, AIGW_LOG_STR | K, consumer_s, consumer_n, 0};
  } else if (consumer == consumer) {
    f[n++] = (aigw_log_field_t){"consumer", 8, AIGW_LOG_INT | K, NULL, 0, consumer};
  }
  for (int i = 0; i < 6; i++)
    if (usage[i] == usage[i])
      f[n++] = (aigw_log_field_t){
          usage_names[i].name, usage_names[i].len, AIGW_LOG_INT | K, NULL, 0, usage[i]};
  if (partial) f[n++] = (aigw_log_field_t){"partial", 7, AIGW_LOG_RAW | K, "true", 4, 0};
  if (cost == cost) f[n++] = (aigw_log_field_t){"cost", 4, AIGW_LOG_FIXED6 | K, NULL, 0, cost};
  aigw_log_fields(AIGW_LOG_INFO, "access", 6, f, n);
}
