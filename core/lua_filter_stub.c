/* lua_filter_stub.c -- TEMPORARY stand-ins for the response filter phases
 * declared in lua_vm.h, so that this tree builds until lua_vm.c implements
 * them. They pass everything through unchanged. Delete this file when the
 * real aigw_lua_header_filter / aigw_lua_body_filter land. */
#include "lua_vm.h"

int aigw_lua_header_filter(aigw_req_t *r, int *status, const char **lines, size_t *len) {
  (void)r;
  (void)status;
  (void)lines;
  (void)len;
  return 0;
}

int aigw_lua_body_filter(aigw_req_t *r, const char *in, size_t len, int eof, const char **out,
                         size_t *outlen) {
  (void)r;
  (void)eof;
  *out = in;
  *outlen = len;
  return 0;
}
