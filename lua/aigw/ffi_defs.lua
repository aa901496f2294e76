-- aigw.ffi_defs -- the C declarations the Lua side calls through the FFI.
-- Kept in one place so a declaration can never be made twice.

local ffi = require "ffi"

ffi.cdef [[
typedef struct aigw_req_s aigw_req_t;
typedef struct { const char *p; size_t n; } aigw_str_t;

int aigw_ffi_req_method(aigw_req_t *r, aigw_str_t *out);
int aigw_ffi_req_path(aigw_req_t *r, aigw_str_t *out);
int aigw_ffi_req_query(aigw_req_t *r, aigw_str_t *out);
int aigw_ffi_req_header(aigw_req_t *r, const char *name, size_t nlen, aigw_str_t *out);
int aigw_ffi_req_header_count(aigw_req_t *r);
int aigw_ffi_req_header_at(aigw_req_t *r, int i, aigw_str_t *name, aigw_str_t *value);
int aigw_ffi_req_body(aigw_req_t *r, aigw_str_t *out);
int aigw_ffi_req_id(aigw_req_t *r, aigw_str_t *out);
int aigw_ffi_req_is_loopback(aigw_req_t *r);
int aigw_ffi_req_client_addr(aigw_req_t *r, char *buf, size_t len, int *port);
int aigw_ffi_req_is_admin(aigw_req_t *r);
int aigw_ffi_req_is_anthropic(aigw_req_t *r);
double aigw_ffi_req_start_time(aigw_req_t *r);
int aigw_ffi_req_filter_body(aigw_req_t *r);
double aigw_ffi_now(void);
double aigw_ffi_monotonic(void);

void aigw_ffi_log(int level, const char *msg, size_t len);
const char *aigw_strerror(int err);
const char *aigw_error_type(int status, int anthropic);

unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
int CRYPTO_memcmp(const void *a, const void *b, size_t len);
]]

return true
