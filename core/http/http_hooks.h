/* http_hooks.h -- where the HTTP layer reaches the layers above it.
 *
 * The connection hands a parsed request to the plugin chain, the response
 * path (a response made above, or an upstream's streamed through
 * upstream/upstream.c) runs the filter phases, and a request that ends
 * aborts its upstream exchange, through this one table of functions, as
 * nginx's phase handlers and filter chain let its HTTP core call modules it
 * does not know. The Lua side (lua_vm.c) fills it before any loop runs
 * (aigw_lua_worker_init, or aigw test's bare generation); it is read-only
 * from then on, so every worker thread reads it without a lock. Each hook
 * is one indirect call where a direct call was: no lookup, no copy. */
#ifndef AIGW_HTTP_HOOKS_H
#define AIGW_HTTP_HOOKS_H

#include <stddef.h>

typedef struct aigw_req_s aigw_req_t;
typedef struct aigw_upstream_s aigw_upstream_t;

typedef struct {
  /* The request is parsed (or its head is, when its body did not come with
   * it): run it through the plugin chain and act on the outcome. */
  void (*handle_request)(aigw_req_t *r);
  /* The body that handle_request's side waits for (aigw_conn_read_body) is
   * complete. */
  void (*body_ready)(aigw_req_t *r);
  /* The response is fully queued: the log phase (once per request). */
  void (*log_phase)(aigw_req_t *r);
  /* The request is being freed: release what the layer above holds of it. */
  void (*request_release)(aigw_req_t *r);
  /* The response filters (r->filter_headers, r->filter_body): see
   * lua_vm.h's aigw_lua_header_filter and the functions after it for the
   * contracts, which these hooks keep. */
  int (*header_filter)(aigw_req_t *r, int *status, const char **lines, size_t *len,
                       int from_upstream, const char *body, size_t blen);
  int (*body_filter)(aigw_req_t *r, const char *in, size_t len, int eof, const char *err,
                     const char **out, size_t *outlen);
  int (*body_filter_usage)(aigw_req_t *r, const char *usage, size_t ulen);
  /* A header_filter returned 1 (aigw.exit): answer with what it set. */
  void (*respond_exit)(aigw_req_t *r);
  /* An upstream's error answer, held whole for the filters. */
  void (*respond_upstream)(aigw_req_t *r, int status, const char *lines, size_t hlen,
                           const char *body, size_t blen);
  /* The request's upstream exchange (r->up): abort it (the request is
   * torn down or cut short), or let it read again (the client's write
   * queue has drained). upstream.h's aigw_upstream_abort and
   * aigw_upstream_client_drained. */
  void (*upstream_abort)(aigw_upstream_t *u);
  void (*upstream_drained)(aigw_upstream_t *u);
} aigw_http_hooks_t;

/* Defined in http_conn.c; filled by the layer above. */
extern aigw_http_hooks_t aigw_http_hooks;

#endif
