/* errors.c -- messages for the core's error codes (see errors.h). */
#include "base/errors.h"

#include <uv.h>

const char *aigw_strerror(int err) {
  switch (err) {
#define XX(code, msg) \
  case AIGW_##code: return msg;
    AIGW_ERRNO_MAP(XX)
#undef XX
    default: break;
  }
  if (err > AIGW__ERRNO_BASE && err < AIGW__ERRNO_END) return "unknown error";
  return uv_strerror(err);
}
