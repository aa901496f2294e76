/* upstream_head.c -- the request head an exchange sends: the proxy's
 * (method, the target's base path and the decision's path, the target's
 * Host, the client's headers minus those not forwarded, the target's and
 * the plugins' lines, x-request-id, framing) and a caller's sink's. Lines
 * the core did not make are checked first (header_lines.h). */
#include <llhttp.h>

#include "base/errors.h"
#include "base/header_lines.h"
#include "upstream/upstream_int.h"

/* 1 when the header lines ("Name: value\r\n"...) have one named name
 * (compared case-insensitively). */
int aigw_lines_have(const char *lines, size_t len, const char *name, size_t nl) {
  const char *p = lines, *end = lines + len;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (eol == NULL) eol = end;
    if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) return 1;
    p = eol + 1;
  }
  return 0;
}

/* --- the request head --- */

static int client_header_dropped(const aigw_req_t *r, const aigw_target_t *t, const char *n,
                                 size_t nl, const char *ctoks, size_t ctl, const char *extra,
                                 size_t elen) {
  static const name_t always[] = {NAME("host"), NAME("content-length"), NAME("expect"),
                                  NAME("x-request-id")};
  if (name_in(always, sizeof always / sizeof *always, n, nl) || is_hop_by_hop(n, nl)) return 1;
  for (int i = 0; i < t->ndrop; i++)
    if (t->drop_len[i] == nl && strncasecmp(n, t->drop[i], nl) == 0) return 1;
  /* Headers the client's Connection header names are hop-by-hop too. */
  if (ctoks) {
    const char *end = ctoks + ctl, *a;
    size_t tl;
    while (next_token(&ctoks, end, &a, &tl))
      if (tl == nl && strncasecmp(a, n, nl) == 0) return 1;
  }
  /* Headers the plugins set for this request replace the client's. */
  return elen && aigw_lines_have(extra, elen, n, nl);
}

/* Returns 0, AIGW_ENOMEM_REQ, or AIGW_EHEAD_REFUSED with *why set: the
 * path or the extra lines (the plugins' and the runtime's) would not make a
 * sound head. The client's own lines were checked when they were parsed. */
int aigw__up_build_head(aigw_upstream_t *u, const char *path, size_t plen, const char *extra,
                        size_t elen, const char **why) {
  aigw_req_t *r = u->req;
  aigw_target_t *t = u->t;
  aigw_conn_t *c = r->conn;
  aigw_buf_t *h = &u->head;
  int rc = aigw_buf_reserve(h, 1024 + r->url_len);
  const char *m = llhttp_method_name((llhttp_method_t)r->method);
  rc |= aigw_buf_append_str(h, m);
  rc |= aigw_buf_append(h, " ", 1);
  size_t target = h->len;
  rc |= aigw_buf_append_str(h, t->base_path);
  if (plen == 0 || path[0] != '/') rc |= aigw_buf_append(h, "/", 1);
  rc |= aigw_buf_append(h, path, plen);
  if (rc == 0) *why = aigw_header_path_check(h->data + target, h->len - target);
  if (rc == 0 && *why == NULL && elen) *why = aigw_header_lines_check(extra, elen);
  if (rc == 0 && *why != NULL) return AIGW_EHEAD_REFUSED;
  rc |= aigw_buf_append_str(h, " HTTP/1.1\r\n");
  rc |= aigw_buf_append_str(h, t->host_header);
  const char *ctoks = NULL;
  size_t ctl = 0;
  aigw_req_find_header(r, "connection", 10, &ctoks, &ctl);
  for (int i = 0; i < r->nhdrs; i++) {
    const aigw_hdr_t *hd = &r->hdrs[i];
    const char *n = c->rbuf + hd->name;
    if (client_header_dropped(r, t, n, hd->name_len, ctoks, ctl, extra, elen)) continue;
    rc |= aigw_buf_append(h, n, hd->name_len);
    rc |= aigw_buf_append(h, ": ", 2);
    rc |= aigw_buf_append(h, c->rbuf + hd->value, hd->value_len);
    rc |= aigw_buf_append(h, "\r\n", 2);
  }
  if (t->set_headers_len) rc |= aigw_buf_append(h, t->set_headers, t->set_headers_len);
  if (elen) rc |= aigw_buf_append(h, extra, elen);
  rc |= aigw_buf_append(h, "x-request-id: ", 14);
  rc |= aigw_buf_append(h, r->id, r->id_len);
  rc |= aigw_buf_append(h, "\r\n", 2);
  if (u->blen || r->method == HTTP_POST || r->method == HTTP_PUT || r->method == HTTP_PATCH) {
    char num[24];
    rc |= aigw_buf_append(h, "Content-Length: ", 16);
    rc |= aigw_buf_append(h, num, aigw_u64toa(u->blen, num));
    rc |= aigw_buf_append(h, "\r\n", 2);
  }
  rc |= aigw_buf_append(h, "\r\n", 2);
  return rc ? AIGW_ENOMEM_REQ : 0;
}

/* The request head for a caller's sink: method and path as given, the
 * target's Host and User-Agent unless the caller sends its own, the
 * caller's lines, then framing. Returns as build_head does. */
int aigw__up_build_fetch_head(aigw_upstream_t *u, const aigw_fetch_t *f, const char **why) {
  *why = aigw_header_token_check(f->method, f->mlen);
  if (*why == NULL) *why = aigw_header_path_check(f->path, f->plen);
  if (*why == NULL) *why = aigw_header_lines_check(f->headers, f->hlen);
  if (*why != NULL) return AIGW_EHEAD_REFUSED;
  aigw_buf_t *h = &u->head;
  int rc = aigw_buf_reserve(h, 256 + f->plen + f->hlen);
  rc |= aigw_buf_append(h, f->method, f->mlen);
  rc |= aigw_buf_append(h, " ", 1);
  rc |= aigw_buf_append(h, f->path, f->plen);
  rc |= aigw_buf_append_str(h, " HTTP/1.1\r\n");
  if (f->add_host) rc |= aigw_buf_append_str(h, u->t->host_header);
  if (f->add_user_agent) rc |= aigw_buf_append_str(h, "User-Agent: aigw/" AIGW_VERSION "\r\n");
  if (f->hlen) rc |= aigw_buf_append(h, f->headers, f->hlen);
  if (!f->keepalive) rc |= aigw_buf_append_str(h, "Connection: close\r\n");
  if (u->blen || u->method == HTTP_POST || u->method == HTTP_PUT || u->method == HTTP_PATCH) {
    char num[24];
    rc |= aigw_buf_append(h, "Content-Length: ", 16);
    rc |= aigw_buf_append(h, num, aigw_u64toa(u->blen, num));
    rc |= aigw_buf_append(h, "\r\n", 2);
  }
  rc |= aigw_buf_append(h, "\r\n", 2);
  return rc ? AIGW_ENOMEM_REQ : 0;
}
