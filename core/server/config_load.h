/* config_load.h -- loading the config file through Lua (config_load.c). */
#ifndef AIGW_CONFIG_LOAD_H
#define AIGW_CONFIG_LOAD_H

#include <stddef.h>

#include "base/config.h"

/* Loads and validates path in a throw-away VM (lua/aigw/engine/config.lua). On
 * failure returns NULL and writes one line ("file:line: what is wrong")
 * into err. Free the result with aigw_config_free. */
aigw_config_t *aigw_config_load(const char *path, const char *prefix, char *err, size_t errlen);

#endif
