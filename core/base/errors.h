/* errors.h -- one error space for the core: libuv's negative codes plus ours.
 *
 * Every fallible core function returns 0 or a negative code. Our codes live
 * below libuv's range so both fit one int; aigw_strerror() gives the exact
 * string Lua receives as `err`. */
#ifndef AIGW_ERRORS_H
#define AIGW_ERRORS_H

// clang-format off: one code and its message to a row
#define AIGW_ERRNO_MAP(XX)                               \
  XX(ENOMEM_REQ, "no memory")                            \
  XX(EUPSTREAM_CLOSED, "upstream closed the connection") \
  XX(ETLS, "tls error")                                  \
  XX(ETLS_VERIFY, "tls certificate verification failed") \
  XX(EDNS, "dns lookup failed")                          \
  XX(EEXISTS, "exists")                                  \
  XX(ENOTFOUND, "not found")                             \
  XX(ENOTNUMBER, "not a number")                         \
  XX(ENOSPACE, "no memory")                              \
  XX(ETOOBIG, "value too large")                         \
  XX(ECONFIG, "invalid configuration")                   \
  XX(EHEAD_REFUSED, "header line refused")
// clang-format on

typedef enum {
  AIGW__ERRNO_BASE = -20000,
#define XX(code, _) AIGW_##code,
  AIGW_ERRNO_MAP(XX)
#undef XX
      AIGW__ERRNO_END
} aigw_errno_t;

/* Static string, never NULL: our message for our codes, uv_strerror() for libuv's. */
const char *aigw_strerror(int err);

#endif
