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
int aigw_ffi_req_body_complete(aigw_req_t *r);
int aigw_ffi_req_id(aigw_req_t *r, aigw_str_t *out);
int aigw_ffi_req_is_loopback(aigw_req_t *r);
int aigw_ffi_req_client_addr(aigw_req_t *r, char *buf, size_t len, int *port);
int aigw_ffi_req_is_admin(aigw_req_t *r);
int aigw_ffi_req_is_anthropic(aigw_req_t *r);
double aigw_ffi_req_start_time(aigw_req_t *r);
int aigw_ffi_req_filter_body(aigw_req_t *r);
int aigw_ffi_req_filter(aigw_req_t *r, int what);
int aigw_ffi_req_filter_state(aigw_req_t *r, int set);
void aigw_ffi_req_resp_lines(aigw_req_t *r, const char *p, size_t n);
double aigw_ffi_now(void);
double aigw_ffi_monotonic(void);

void *memchr(const void *s, int c, size_t n);
typedef struct { int32_t start, end; } aigw_json_span_t;
int aigw_json_scan(const char *p, size_t n, const char *const *names, const size_t *nlens,
                   int nnames, aigw_json_span_t *spans, int *odd, char *err, size_t errlen);
typedef struct { int32_t ks, ke, vs, ve, next, parent; } aigw_json_node_t;
int aigw_json_index(const char *p, size_t n, aigw_json_node_t *out, int max, int levels);
int aigw_json_escapes_ok(const char *p, size_t n);
void aigw_json_numbers(const char *p, size_t n, const char *const *names, const size_t *nlens,
                       int nnames, double *out);

void aigw_ffi_log(int level, const char *msg, size_t len);
int aigw_ffi_log_enabled(int level);
typedef struct {
  const char *key; size_t klen; int type; const char *s; size_t n; double num;
} aigw_log_field_t;
void aigw_ffi_log_fields(int level, const char *msg, size_t len, const aigw_log_field_t *f, int n);
void aigw_ffi_log_access(aigw_req_t *r, double status, const char *provider, size_t provider_n,
                         const char *model, size_t model_n, double attempts, double consumer,
                         const char *consumer_s, size_t consumer_n, double prompt_tokens,
                         double completion_tokens, double total_tokens, double cached_tokens,
                         double reasoning_tokens, double cache_creation_tokens, int partial,
                         double cost);
double aigw_ffi_log_dropped(void);
int aigw_ffi_log_format(void);
int aigw_log_writer_start(void);   /* for tests/bench/log_bench.lua */
void aigw_log_writer_stop(void);
void aigw_log_flush(void);
const char *aigw_strerror(int err);
const char *aigw_error_type(int status, int anthropic);

unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
int CRYPTO_memcmp(const void *a, const void *b, size_t len);

typedef struct ossl_lib_ctx_st OSSL_LIB_CTX;
typedef struct ossl_param_st {
  const char *key; unsigned int data_type; void *data; size_t data_size; size_t return_size;
} OSSL_PARAM;
OSSL_PARAM OSSL_PARAM_construct_utf8_string(const char *key, char *buf, size_t bsize);
OSSL_PARAM OSSL_PARAM_construct_end(void);

typedef struct evp_md_st EVP_MD;
typedef struct evp_md_ctx_st EVP_MD_CTX;
EVP_MD *EVP_MD_fetch(OSSL_LIB_CTX *ctx, const char *algorithm, const char *properties);
void EVP_MD_free(EVP_MD *md);
EVP_MD_CTX *EVP_MD_CTX_new(void);
void EVP_MD_CTX_free(EVP_MD_CTX *ctx);
int EVP_DigestInit_ex2(EVP_MD_CTX *ctx, const EVP_MD *type, const OSSL_PARAM params[]);
int EVP_DigestUpdate(EVP_MD_CTX *ctx, const void *d, size_t cnt);
int EVP_DigestFinal_ex(EVP_MD_CTX *ctx, unsigned char *md, unsigned int *s);

typedef struct evp_mac_st EVP_MAC;
typedef struct evp_mac_ctx_st EVP_MAC_CTX;
EVP_MAC *EVP_MAC_fetch(OSSL_LIB_CTX *libctx, const char *algorithm, const char *properties);
void EVP_MAC_free(EVP_MAC *mac);
EVP_MAC_CTX *EVP_MAC_CTX_new(EVP_MAC *mac);
void EVP_MAC_CTX_free(EVP_MAC_CTX *ctx);
int EVP_MAC_CTX_set_params(EVP_MAC_CTX *ctx, const OSSL_PARAM params[]);
int EVP_MAC_init(EVP_MAC_CTX *ctx, const unsigned char *key, size_t keylen, const OSSL_PARAM params[]);
int EVP_MAC_update(EVP_MAC_CTX *ctx, const unsigned char *data, size_t datalen);
int EVP_MAC_final(EVP_MAC_CTX *ctx, unsigned char *out, size_t *outl, size_t outsize);

typedef struct evp_rand_ctx_st EVP_RAND_CTX;
EVP_RAND_CTX *RAND_get0_public(OSSL_LIB_CTX *ctx);
int EVP_RAND_generate(EVP_RAND_CTX *ctx, unsigned char *out, size_t outlen, unsigned int strength,
                      int prediction_resistance, const unsigned char *addin, size_t addin_len);
int RAND_bytes(unsigned char *buf, int num);

int EVP_EncodeBlock(unsigned char *t, const unsigned char *f, int n);
]]

-- core/base/shdict.c: the shared dictionaries (aigw.shared).
ffi.cdef [[
typedef struct aigw_shdict_s aigw_shdict_t;
aigw_shdict_t *aigw_shdict_lookup(const char *name);
size_t aigw_shdict_capacity(const aigw_shdict_t *d);
size_t aigw_shdict_used(const aigw_shdict_t *d);
int aigw_shdict_get(aigw_shdict_t *d, const char *key, size_t klen,
                    int *type, const char **str, size_t *len, double *num);
int aigw_shdict_set(aigw_shdict_t *d, const char *key, size_t klen, int type,
                    const char *str, size_t len, double num, double ttl);
int aigw_shdict_add(aigw_shdict_t *d, const char *key, size_t klen, int type,
                    const char *str, size_t len, double num, double ttl);
int aigw_shdict_replace(aigw_shdict_t *d, const char *key, size_t klen, int type,
                        const char *str, size_t len, double num, double ttl);
int aigw_shdict_incr(aigw_shdict_t *d, const char *key, size_t klen, double delta,
                     int has_init, double init, double init_ttl, double *out);
int aigw_shdict_delete(aigw_shdict_t *d, const char *key, size_t klen);
int aigw_shdict_ttl(aigw_shdict_t *d, const char *key, size_t klen, double *ttl);
void aigw_shdict_flush_all(aigw_shdict_t *d);
]]

-- Readiness for GET /ready (aigw.engine.health).
ffi.cdef [[
void aigw_ffi_set_ready(int ready);
]]

-- core/base/log.c's level and format (enums: int-sized), which spec/aigw/log_spec.lua
-- and log_fields_spec.lua set.
ffi.cdef [[ int aigw_log_level; int aigw_log_format; ]]

-- OpenSSL's one-shot HMAC(), which aigw.crypto avoids: tests/bench/crypto_bench.lua
-- times it next to aigw.crypto.
ffi.cdef [[
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len, const unsigned char *d,
                    size_t n, unsigned char *md, unsigned int *md_len);
]]

return true
