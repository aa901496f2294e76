/* shdict.h -- shared dictionaries: named zones of key/value pairs shared by
 * every worker thread of the process.
 *
 * Zones are declared in the config with a byte size and created once at
 * start-up, before the workers; they survive reloads. Values are strings or
 * numbers (double), each with an optional TTL. When a zone is full, expired
 * entries and then the least recently used ones are evicted to make room.
 * Every call is thread-safe; a call holds the zone's lock for a hash lookup
 * and a copy.
 *
 * Keys are binary-safe byte strings of 0 to 65535 bytes (klen), values are
 * binary-safe. A zone's capacity bounds what its entries allocate: header,
 * key and value of each, as the allocator sized them; aigw_shdict_used()
 * reports that sum. */
#ifndef AIGW_SHDICT_H
#define AIGW_SHDICT_H

#include <stddef.h>

typedef struct aigw_shdict_s aigw_shdict_t;

enum { AIGW_SHDICT_NIL = 0, AIGW_SHDICT_STRING = 1, AIGW_SHDICT_NUMBER = 2 };

/* Creates and registers a zone; capacity is the bytes its entries may use
 * (at least 4096). A name is 1-64 characters of A-Z a-z 0-9 _ -.
 * Returns NULL (and sets *err, if not NULL, to a static message) on a bad
 * name or size, or if a zone of that name exists. */
aigw_shdict_t *aigw_shdict_new(const char *name, size_t capacity, const char **err);
/* Unregisters and frees a zone and its entries; no thread may still use it. */
void aigw_shdict_free(aigw_shdict_t *d);
/* Frees every zone, and the calling thread's get buffer (at process exit,
 * so leak checkers stay quiet). */
void aigw_shdict_free_all(void);
/* Frees the calling thread's get buffer. A worker thread calls it before it
 * ends; the thread may use shdicts again afterwards. */
void aigw_shdict_thread_cleanup(void);
/* The registered zone of that name, or NULL. Takes the registry lock: look
 * a zone up once and keep the pointer (zones live until process exit). */
aigw_shdict_t *aigw_shdict_lookup(const char *name);
const char *aigw_shdict_name(const aigw_shdict_t *d);
size_t aigw_shdict_capacity(const aigw_shdict_t *d);
size_t aigw_shdict_used(const aigw_shdict_t *d);

/* get: *type is AIGW_SHDICT_NIL when the key is absent or expired. A string
 * value is copied into a buffer owned by the calling thread, valid until its
 * next shdict call: *str and *len point at it. A number goes to *num.
 * A get refreshes the entry in the LRU order. Returns 0 (found or not), or
 * AIGW_ENOMEM_REQ if the thread's buffer cannot grow to the value's size. */
int aigw_shdict_get(aigw_shdict_t *d, const char *key, size_t klen, int *type, const char **str,
                    size_t *len, double *num);

/* set/add/replace a string (type STRING) or number (type NUMBER).
 * ttl <= 0 means no expiry (seconds, fractional allowed, at least 1 ms
 * when positive). type NIL deletes: set removes the key, add leaves it
 * absent, replace removes a live key. An expired key counts as missing.
 * Returns 0, AIGW_EEXISTS (add on a live key), AIGW_ENOTFOUND (replace on a
 * missing key), AIGW_ENOSPACE (cannot fit even after eviction: only when
 * the allocator fails, since every entry may be evicted) or AIGW_ETOOBIG
 * (key over 65535 bytes or entry larger than the zone). On an error the
 * zone keeps its previous value. */
int aigw_shdict_set(aigw_shdict_t *d, const char *key, size_t klen, int type, const char *str,
                    size_t len, double num, double ttl);
int aigw_shdict_add(aigw_shdict_t *d, const char *key, size_t klen, int type, const char *str,
                    size_t len, double num, double ttl);
int aigw_shdict_replace(aigw_shdict_t *d, const char *key, size_t klen, int type, const char *str,
                        size_t len, double num, double ttl);

/* incr: adds delta to a number value. A missing key is created from init
 * (when has_init) with init_ttl, else AIGW_ENOTFOUND; a string value gives
 * AIGW_ENOTNUMBER. The new value goes to *out. Atomic across workers.
 * An existing key keeps its TTL. Creating may fail like set. */
int aigw_shdict_incr(aigw_shdict_t *d, const char *key, size_t klen, double delta, int has_init,
                     double init, double init_ttl, double *out);

/* Removes the key; 0 whether it was there or not. */
int aigw_shdict_delete(aigw_shdict_t *d, const char *key, size_t klen);

/* Remaining TTL in seconds: 0 = no expiry; AIGW_ENOTFOUND if absent. */
int aigw_shdict_ttl(aigw_shdict_t *d, const char *key, size_t klen, double *ttl);

/* Drops every entry. */
void aigw_shdict_flush_all(aigw_shdict_t *d);

#endif
