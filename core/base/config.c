/* config.c -- the core's settings (config.h): freeing them. They are made
 * by config_load.c, from the Lua config. */
#include "base/config.h"

#include <openssl/crypto.h>
#include <string.h>

#include "base/alloc.h"

void aigw_config_free(aigw_config_t *c) {
  if (c == NULL) return;
  for (int i = 0; i < c->nlisten; i++) aigw_free(c->listen[i]);
  aigw_free(c->listen);
  for (int i = 0; i < c->nzones; i++) aigw_free(c->zones[i].name);
  aigw_free(c->zones);
  aigw_free(c->admin_listen);
  if (c->first_admin_key) {
    OPENSSL_cleanse(c->first_admin_key, strlen(c->first_admin_key));
    aigw_free(c->first_admin_key);
  }
  aigw_free(c->pid_file);
  aigw_free(c->path);
  aigw_free(c->prefix);
  aigw_free(c);
}
