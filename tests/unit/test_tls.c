/* test_tls.c -- core/base/tls.c, client and server pumped into each other in memory.
 *
 * main() makes a throw-away CA, a server certificate for "localhost" and
 * 127.0.0.1 signed by it, and a second unrelated CA, as PEM files in a
 * mkdtemp() directory that is removed at the end. No sockets: each test moves
 * take_output() of one side into feed() of the other. */
#include "test.h"

#include "base/alloc.h"
#include "base/errors.h"
#include "base/tls.h"

#include <stdlib.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

static struct {
  char dir[64];
  char ca[96], other_ca[96], cert[96], key[96];
  aigw_tls_ctx_t *server; /* alpn "http/1.1" */
  aigw_tls_ctx_t *client; /* ca_file = our CA, verifying */
} g;

/* ---- certificates ---- */

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value) {
  X509V3_CTX v3;
  X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
  if (ext == NULL) return 0;
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok;
}

/* A certificate for key; self-signed when issuer is NULL. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, long serial, const char *san, X509 *issuer,
                       EVP_PKEY *issuer_key) {
  X509 *x = X509_new();
  int ok = x != NULL;
  ok = ok && X509_set_version(x, X509_VERSION_3);
  ok = ok && ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  ok = ok && X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  ok = ok && X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  ok = ok && X509_set_pubkey(x, key);
  ok = ok && X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                        (const unsigned char *)cn, -1, -1, 0);
  X509 *signer = issuer ? issuer : x;
  ok = ok && X509_set_issuer_name(x, X509_get_subject_name(signer));
  if (issuer == NULL) {
    ok = ok && add_ext(x, signer, NID_basic_constraints, "critical,CA:TRUE");
    ok = ok && add_ext(x, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
    ok = ok && add_ext(x, signer, NID_subject_key_identifier, "hash");
  } else {
    ok = ok && add_ext(x, signer, NID_basic_constraints, "critical,CA:FALSE");
    ok = ok && add_ext(x, signer, NID_key_usage, "critical,digitalSignature");
    ok = ok && add_ext(x, signer, NID_ext_key_usage, "serverAuth");
    ok = ok && add_ext(x, signer, NID_authority_key_identifier, "keyid:always");
    ok = ok && add_ext(x, signer, NID_subject_alt_name, san);
  }
  ok = ok && X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0;
  if (!ok) {
    X509_free(x);
    return NULL;
  }
  return x;
}

static int write_pem(const char *path, X509 *cert, EVP_PKEY *key) {
  FILE *f = fopen(path, "w");
  if (f == NULL) return 0;
  int ok = cert ? PEM_write_X509(f, cert) : PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
  return fclose(f) == 0 && ok;
}

static int make_fixtures(void) {
  const char *tmp = getenv("TMPDIR");
  snprintf(g.dir, sizeof g.dir, "%s/aigw_tls_XXXXXX", tmp && strlen(tmp) < 40 ? tmp : "/tmp");
  if (mkdtemp(g.dir) == NULL) return 0;
  snprintf(g.ca, sizeof g.ca, "%s/ca.pem", g.dir);
  snprintf(g.other_ca, sizeof g.other_ca, "%s/other_ca.pem", g.dir);
  snprintf(g.cert, sizeof g.cert, "%s/server.pem", g.dir);
  snprintf(g.key, sizeof g.key, "%s/server.key", g.dir);

  EVP_PKEY *ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  EVP_PKEY *other_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  EVP_PKEY *srv_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  X509 *ca = NULL, *other = NULL, *srv = NULL;
  int ok = ca_key && other_key && srv_key;
  ok = ok && (ca = make_cert(ca_key, "aigw test CA", 1, NULL, NULL, NULL)) != NULL;
  ok = ok && (other = make_cert(other_key, "aigw other CA", 2, NULL, NULL, NULL)) != NULL;
  ok = ok &&
       (srv = make_cert(srv_key, "localhost", 3, "DNS:localhost,IP:127.0.0.1", ca, ca_key)) != NULL;
  ok = ok && write_pem(g.ca, ca, NULL) && write_pem(g.other_ca, other, NULL);
  ok = ok && write_pem(g.cert, srv, NULL) && write_pem(g.key, NULL, srv_key);
  X509_free(ca);
  X509_free(other);
  X509_free(srv);
  EVP_PKEY_free(ca_key);
  EVP_PKEY_free(other_key);
  EVP_PKEY_free(srv_key);
  return ok;
}

static void remove_fixtures(void) {
  unlink(g.ca);
  unlink(g.other_ca);
  unlink(g.cert);
  unlink(g.key);
  rmdir(g.dir);
}

/* ---- the pump ---- */

/* Moves what `from` has queued into `to`, `step` bytes per feed (0: all at
 * once). Returns the number of bytes moved. */
static size_t move_step(aigw_tls_t *from, aigw_tls_t *to, size_t step) {
  size_t n;
  char *p = aigw_tls_take_output(from, &n);
  if (p == NULL) return 0;
  if (step == 0) step = n;
  for (size_t off = 0; off < n; off += step)
    CHECK_EQ_INT(aigw_tls_feed(to, p + off, n - off < step ? n - off : step), 0);
  aigw_free(p);
  return n;
}

static size_t move(aigw_tls_t *from, aigw_tls_t *to) { return move_step(from, to, 0); }

typedef struct {
  aigw_tls_t *c, *s;
  int crc, src; /* last handshake result of each side */
} pair_t;

static void handshake(pair_t *p) {
  p->crc = p->src = AIGW_TLS_WANT_IO;
  for (int i = 0; i < 16 && (p->crc > 0 || p->src > 0); i++) {
    if (p->crc > 0) p->crc = aigw_tls_handshake(p->c);
    move(p->c, p->s);
    if (p->src > 0) p->src = aigw_tls_handshake(p->s);
    move(p->s, p->c);
  }
}

static pair_t pair_open(aigw_tls_ctx_t *cctx, const char *host, const char *alpn) {
  pair_t p = {aigw_tls_client_new(cctx, host, alpn), aigw_tls_server_new(g.server), 0, 0};
  CHECK(p.c != NULL);
  CHECK(p.s != NULL);
  if (p.c != NULL && p.s != NULL) handshake(&p);
  return p;
}

static void pair_close(pair_t *p) {
  aigw_tls_free(p->c);
  aigw_tls_free(p->s);
}

/* Writes len bytes on `from`, moves them, reads them all on `to` into a fresh
 * buffer. Returns it (aigw_free) or NULL, with what was read in *got. */
static char *send_all(aigw_tls_t *from, aigw_tls_t *to, const char *data, size_t len, size_t *got) {
  char *out = aigw_malloc(len + 1);
  *got = 0;
  CHECK_EQ_INT(aigw_tls_write(from, data, len), 0);
  move(from, to);
  for (;;) {
    size_t room = len + 1 - *got;
    int n = aigw_tls_read(to, out + *got, room < 16384 ? room : 16384);
    if (n <= 0) {
      CHECK_EQ_INT(n, 0);
      break;
    }
    *got += (size_t)n;
  }
  move(to, from); /* whatever reading queued (nothing expected) */
  return out;
}

static int alpn_is(const aigw_tls_t *t, const char *want) {
  size_t n;
  const char *p = aigw_tls_alpn_selected(t, &n);
  return p != NULL && n == strlen(want) && memcmp(p, want, n) == 0;
}

/* ---- tests ---- */

TEST(handshake_localhost) {
  pair_t p = pair_open(g.client, "localhost", "http/1.1");
  CHECK_EQ_INT(p.crc, 0);
  CHECK_EQ_INT(p.src, 0);
  CHECK(aigw_tls_handshake_done(p.c));
  CHECK(aigw_tls_handshake_done(p.s));
  CHECK(alpn_is(p.c, "http/1.1"));
  CHECK(alpn_is(p.s, "http/1.1"));
  CHECK_EQ_STR(aigw_tls_last_error(p.c), "");
  pair_close(&p);
}

TEST(handshake_ip_literal) {
  pair_t p = pair_open(g.client, "127.0.0.1", NULL);
  CHECK_EQ_INT(p.crc, 0);
  CHECK_EQ_INT(p.src, 0);
  CHECK(aigw_tls_alpn_selected(p.c, NULL) == NULL);
  pair_close(&p);
}

TEST(handshake_byte_by_byte) {
  aigw_tls_t *c = aigw_tls_client_new(g.client, "localhost", "h2, http/1.1");
  aigw_tls_t *s = aigw_tls_server_new(g.server);
  int crc = AIGW_TLS_WANT_IO, src = AIGW_TLS_WANT_IO;
  for (int i = 0; i < 16 && (crc > 0 || src > 0); i++) {
    if (crc > 0) crc = aigw_tls_handshake(c);
    size_t n;
    char *out = aigw_tls_take_output(c, &n);
    for (size_t k = 0; k < n; k++) {
      CHECK_EQ_INT(aigw_tls_feed(s, out + k, 1), 0);
      if (src > 0) src = aigw_tls_handshake(s);
    }
    aigw_free(out);
    if (src > 0) src = aigw_tls_handshake(s);
    move_step(s, c, 7);
  }
  CHECK_EQ_INT(crc, 0);
  CHECK_EQ_INT(src, 0);
  CHECK(alpn_is(c, "http/1.1"));
  aigw_tls_free(c);
  aigw_tls_free(s);
}

TEST(round_trip) {
  pair_t p = pair_open(g.client, "localhost", "http/1.1");
  size_t got;
  char *r = send_all(p.c, p.s, "GET / HTTP/1.1\r\n\r\n", 18, &got);
  CHECK_EQ_INT(got, 18);
  CHECK(memcmp(r, "GET / HTTP/1.1\r\n\r\n", 18) == 0);
  aigw_free(r);
  r = send_all(p.s, p.c, "HTTP/1.1 200 OK\r\n", 17, &got);
  CHECK_EQ_INT(got, 17);
  CHECK(memcmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
  aigw_free(r);

  size_t big = 1 << 20;
  char *payload = aigw_malloc(big);
  for (size_t i = 0; i < big; i++) payload[i] = (char)(i * 131 + (i >> 11));
  r = send_all(p.c, p.s, payload, big, &got);
  CHECK_EQ_INT(got, big);
  CHECK(memcmp(r, payload, big) == 0);
  aigw_free(r);
  r = send_all(p.s, p.c, payload, big, &got);
  CHECK_EQ_INT(got, big);
  CHECK(memcmp(r, payload, big) == 0);
  aigw_free(r);
  aigw_free(payload);

  /* Still usable after the buffers were trimmed. */
  r = send_all(p.c, p.s, "again", 5, &got);
  CHECK_EQ_INT(got, 5);
  CHECK(memcmp(r, "again", 5) == 0);
  aigw_free(r);
  pair_close(&p);
}

TEST(verify_hostname_mismatch) {
  pair_t p = pair_open(g.client, "example.com", NULL);
  CHECK_EQ_INT(p.crc, AIGW_ETLS_VERIFY);
  CHECK(strstr(aigw_tls_last_error(p.c), "hostname mismatch") != NULL);
  CHECK(strstr(aigw_tls_last_error(p.c), "example.com") != NULL);
  CHECK_EQ_INT(p.src, AIGW_ETLS); /* the client's alert reached the server */
  /* Sticky: the same answer, the same message. */
  CHECK_EQ_INT(aigw_tls_handshake(p.c), AIGW_ETLS_VERIFY);
  CHECK_EQ_INT(aigw_tls_read(p.c, (char[8]){0}, 8), AIGW_ETLS_VERIFY);
  CHECK(strstr(aigw_tls_last_error(p.c), "hostname mismatch") != NULL);
  pair_close(&p);
}

TEST(verify_ip_mismatch) {
  pair_t p = pair_open(g.client, "127.0.0.2", NULL);
  CHECK_EQ_INT(p.crc, AIGW_ETLS_VERIFY);
  CHECK(strstr(aigw_tls_last_error(p.c), "IP address mismatch") != NULL);
  pair_close(&p);
}

TEST(verify_unknown_ca) {
  char err[256] = "";
  aigw_tls_ctx_t *sys = aigw_tls_client_ctx_new(NULL, 1, err, sizeof err);
  CHECK(sys != NULL);
  if (sys == NULL) return;
  pair_t p = pair_open(sys, "localhost", NULL);
  CHECK_EQ_INT(p.crc, AIGW_ETLS_VERIFY);
  CHECK(strncmp(aigw_tls_last_error(p.c), "certificate verify failed: ", 27) == 0);
  CHECK(strstr(aigw_tls_last_error(p.c), "issuer") != NULL);
  pair_close(&p);
  aigw_tls_ctx_free(sys);
}

/* SSL_CERT_FILE feeds the default store; a ca_file replaces it entirely. */
TEST(ca_file_replaces_system_store) {
  const char *saved = getenv("SSL_CERT_FILE");
  char *old = saved ? aigw_strdup(saved) : NULL;
  setenv("SSL_CERT_FILE", g.ca, 1);
  char err[256] = "";
  aigw_tls_ctx_t *sys = aigw_tls_client_ctx_new(NULL, 1, err, sizeof err);
  aigw_tls_ctx_t *other = aigw_tls_client_ctx_new(g.other_ca, 1, err, sizeof err);
  if (old) setenv("SSL_CERT_FILE", old, 1);
  else unsetenv("SSL_CERT_FILE");
  aigw_free(old);
  CHECK(sys != NULL && other != NULL);
  if (sys == NULL || other == NULL) goto out;

  pair_t p = pair_open(sys, "localhost", NULL);
  CHECK_EQ_INT(p.crc, 0);
  pair_close(&p);
  p = pair_open(other, "localhost", NULL);
  CHECK_EQ_INT(p.crc, AIGW_ETLS_VERIFY);
  pair_close(&p);
out:
  aigw_tls_ctx_free(sys);
  aigw_tls_ctx_free(other);
}

TEST(no_verify_accepts_wrong_name) {
  char err[256] = "";
  aigw_tls_ctx_t *insecure = aigw_tls_client_ctx_new(NULL, 0, err, sizeof err);
  CHECK(insecure != NULL);
  if (insecure == NULL) return;
  pair_t p = pair_open(insecure, "example.com", "http/1.1");
  CHECK_EQ_INT(p.crc, 0);
  CHECK_EQ_INT(p.src, 0);
  size_t got;
  char *r = send_all(p.c, p.s, "hi", 2, &got);
  CHECK_EQ_INT(got, 2);
  aigw_free(r);
  pair_close(&p);
  aigw_tls_ctx_free(insecure);
}

TEST(alpn_no_overlap_fails) {
  pair_t p = pair_open(g.client, "localhost", "h2");
  CHECK_EQ_INT(p.src, AIGW_ETLS);
  CHECK_EQ_INT(p.crc, AIGW_ETLS);
  CHECK(strstr(aigw_tls_last_error(p.c), "application protocol") != NULL);
  pair_close(&p);
}

TEST(close_notify) {
  pair_t p = pair_open(g.client, "localhost", NULL);
  char buf[64];
  CHECK_EQ_INT(aigw_tls_read(p.c, buf, sizeof buf), 0); /* session tickets */
  CHECK_EQ_INT(aigw_tls_shutdown(p.c), 0);
  CHECK(move(p.c, p.s) > 0);
  CHECK_EQ_INT(aigw_tls_shutdown(p.c), 0); /* already sent: nothing more */
  CHECK(move(p.c, p.s) == 0);
  CHECK_EQ_INT(aigw_tls_read(p.s, buf, sizeof buf), AIGW_EUPSTREAM_CLOSED);
  CHECK_EQ_INT(aigw_tls_read(p.s, buf, sizeof buf), AIGW_EUPSTREAM_CLOSED);
  /* The server answers with its own close_notify. */
  CHECK_EQ_INT(aigw_tls_shutdown(p.s), 0);
  CHECK(move(p.s, p.c) > 0);
  CHECK_EQ_INT(aigw_tls_read(p.c, buf, sizeof buf), AIGW_EUPSTREAM_CLOSED);
  pair_close(&p);
}

TEST(garbage_ciphertext) {
  static const char junk[] = "\x17\x03\x03\x00\x20 this is not a TLS record at all!!";
  /* Before the handshake: the server sees nonsense instead of a ClientHello. */
  aigw_tls_t *s = aigw_tls_server_new(g.server);
  CHECK_EQ_INT(aigw_tls_feed(s, "GET / HTTP/1.1\r\n\r\n", 18), 0);
  CHECK_EQ_INT(aigw_tls_handshake(s), AIGW_ETLS);
  CHECK(aigw_tls_last_error(s)[0] != '\0');
  CHECK(!aigw_tls_handshake_done(s));
  aigw_tls_free(s);

  /* After it: an application-data record that does not decrypt. */
  pair_t p = pair_open(g.client, "localhost", NULL);
  char buf[64];
  CHECK_EQ_INT(aigw_tls_read(p.c, buf, sizeof buf), 0);
  CHECK_EQ_INT(aigw_tls_feed(p.c, junk, sizeof junk - 1), 0);
  CHECK_EQ_INT(aigw_tls_read(p.c, buf, sizeof buf), AIGW_ETLS);
  CHECK(strstr(aigw_tls_last_error(p.c), "error:") != NULL);
  CHECK_EQ_INT(aigw_tls_write(p.c, "x", 1), AIGW_ETLS);
  pair_close(&p);
}

TEST(session_resumption) {
  char err[256] = "";
  aigw_tls_ctx_t *cctx = aigw_tls_client_ctx_new(g.ca, 1, err, sizeof err);
  CHECK(cctx != NULL);
  if (cctx == NULL) return;
  char buf[64];
  pair_t p = pair_open(cctx, "localhost", NULL);
  CHECK_EQ_INT(p.crc, 0);
  CHECK(!aigw_tls_session_reused(p.c));
  CHECK_EQ_INT(aigw_tls_read(p.c, buf, sizeof buf), 0); /* takes the tickets */
  pair_close(&p);

  p = pair_open(cctx, "localhost", NULL);
  CHECK_EQ_INT(p.crc, 0);
  CHECK(aigw_tls_session_reused(p.c));
  CHECK(aigw_tls_session_reused(p.s));
  pair_close(&p);

  /* Sessions are kept per host. */
  p = pair_open(cctx, "127.0.0.1", NULL);
  CHECK_EQ_INT(p.crc, 0);
  CHECK(!aigw_tls_session_reused(p.c));
  pair_close(&p);
  aigw_tls_ctx_free(cctx);
}

TEST(ctx_outlives_its_free) {
  char err[256] = "";
  aigw_tls_ctx_t *cctx = aigw_tls_client_ctx_new(g.ca, 1, err, sizeof err);
  aigw_tls_t *c = aigw_tls_client_new(cctx, "localhost", NULL);
  aigw_tls_ctx_free(cctx); /* c keeps it alive */
  pair_t p = {c, aigw_tls_server_new(g.server), 0, 0};
  handshake(&p);
  CHECK_EQ_INT(p.crc, 0);
  char buf[8];
  CHECK_EQ_INT(aigw_tls_read(p.c, buf, sizeof buf), 0); /* stores a session */
  pair_close(&p);
}

/* Contexts on the system store are one per verify setting, shared by every
 * caller until the last one lets go; a context with its own CA file is its
 * caller's alone. */
TEST(system_store_contexts_are_shared) {
  char err[256] = "";
  aigw_tls_ctx_t *a = aigw_tls_client_ctx_new(NULL, 1, err, sizeof err);
  aigw_tls_ctx_t *b = aigw_tls_client_ctx_new("", 1, err, sizeof err);
  aigw_tls_ctx_t *off = aigw_tls_client_ctx_new(NULL, 0, err, sizeof err);
  aigw_tls_ctx_t *own1 = aigw_tls_client_ctx_new(g.ca, 1, err, sizeof err);
  aigw_tls_ctx_t *own2 = aigw_tls_client_ctx_new(g.ca, 1, err, sizeof err);
  CHECK(a != NULL && a == b);
  CHECK(off != NULL && off != a);
  CHECK(own1 != NULL && own2 != NULL && own1 != own2 && own1 != a);
  /* a connection keeps the shared context alive after its callers let go */
  aigw_tls_t *c = aigw_tls_client_new(a, "localhost", NULL);
  CHECK(c != NULL);
  aigw_tls_ctx_free(a);
  aigw_tls_ctx_free(b);
  aigw_tls_ctx_t *again = aigw_tls_client_ctx_new(NULL, 1, err, sizeof err);
  CHECK(again == a); /* still listed: the connection holds it */
  aigw_tls_free(c);
  aigw_tls_ctx_free(again);
  aigw_tls_ctx_t *fresh = aigw_tls_client_ctx_new(NULL, 1, err, sizeof err);
  CHECK(fresh != NULL);
  aigw_tls_ctx_free(fresh);
  aigw_tls_ctx_free(off);
  aigw_tls_ctx_free(own1);
  aigw_tls_ctx_free(own2);
}

TEST(misuse_and_errors) {
  char err[256] = "";
  CHECK(aigw_tls_client_ctx_new("/nonexistent/ca.pem", 1, err, sizeof err) == NULL);
  CHECK(strstr(err, "/nonexistent/ca.pem") != NULL);
  CHECK(aigw_tls_client_ctx_new(g.key, 1, err, sizeof err) == NULL); /* no certs */
  CHECK(aigw_tls_server_ctx_new(g.cert, "/nonexistent/key", NULL, err, sizeof err) == NULL);
  CHECK(strstr(err, "private key") != NULL);
  CHECK(aigw_tls_server_ctx_new(g.ca, g.key, NULL, err, sizeof err) == NULL); /* mismatch */
  CHECK(aigw_tls_server_ctx_new(g.cert, g.key, "h2,,http/1.1", err, sizeof err) == NULL);
  CHECK(strstr(err, "ALPN") != NULL);

  CHECK(aigw_tls_client_new(g.server, "localhost", NULL) == NULL);
  CHECK(aigw_tls_server_new(g.client) == NULL);
  CHECK(aigw_tls_client_new(g.client, NULL, NULL) == NULL); /* verifying needs a host */
  CHECK(aigw_tls_client_new(g.client, "[not-an-ip]", NULL) == NULL);

  aigw_tls_t *c = aigw_tls_client_new(g.client, "[::1]", NULL);
  CHECK(c != NULL);
  size_t n = 123;
  CHECK(aigw_tls_take_output(c, &n) == NULL);
  CHECK_EQ_INT(n, 0);
  CHECK_EQ_INT(aigw_tls_write(c, "x", 1), AIGW_ETLS);
  CHECK(strstr(aigw_tls_last_error(c), "handshake") != NULL);
  CHECK_EQ_INT(aigw_tls_shutdown(c), 0);
  CHECK_EQ_INT(aigw_tls_handshake(c), AIGW_TLS_WANT_IO); /* not poisoned by misuse */
  char *hello = aigw_tls_take_output(c, &n);
  CHECK(hello != NULL && n > 0);
  aigw_free(hello);
  aigw_tls_free(c);
  aigw_tls_free(NULL);
  aigw_tls_ctx_free(NULL);
}

int main(void) {
  char err[256] = "";
  if (!make_fixtures()) {
    fprintf(stderr, "cannot create test certificates in %s\n", g.dir);
    remove_fixtures();
    return 1;
  }
  g.server = aigw_tls_server_ctx_new(g.cert, g.key, "http/1.1", err, sizeof err);
  if (g.server == NULL) fprintf(stderr, "server ctx: %s\n", err);
  g.client = aigw_tls_client_ctx_new(g.ca, 1, err, sizeof err);
  if (g.client == NULL) fprintf(stderr, "client ctx: %s\n", err);
  if (g.server != NULL && g.client != NULL) {
    RUN(handshake_localhost);
    RUN(handshake_ip_literal);
    RUN(handshake_byte_by_byte);
    RUN(round_trip);
    RUN(verify_hostname_mismatch);
    RUN(verify_ip_mismatch);
    RUN(verify_unknown_ca);
    RUN(ca_file_replaces_system_store);
    RUN(no_verify_accepts_wrong_name);
    RUN(alpn_no_overlap_fails);
    RUN(close_notify);
    RUN(garbage_ciphertext);
    RUN(session_resumption);
    RUN(ctx_outlives_its_free);
    RUN(system_store_contexts_are_shared);
    RUN(misuse_and_errors);
  } else {
    test__failed++;
  }
  aigw_tls_ctx_free(g.server);
  aigw_tls_ctx_free(g.client);
  remove_fixtures();
  return TEST_SUMMARY();
}
