/* lua_vm.h -- the LuaJIT side of a worker: creating a VM, entering it for a
 * request, and reading back what the plugins decided. */
#ifndef AIGW_LUA_VM_H
#define AIGW_LUA_VM_H

#include <lua.h>

#include "http_conn.h"

/* A fresh VM with the standard libraries, cjson preloaded, the aigw_core C
 * module, and package.path set to <prefix>/lua and <prefix>/plugins. */
lua_State *aigw_lua_new_state(const char *prefix);

/* Loads the runtime in the worker's VM and runs its init_worker with the
 * config. Returns 0, or -1 with the error written to err. */
int aigw_lua_worker_init(aigw_worker_t *w, char *err, size_t errlen);
void aigw_lua_worker_close(aigw_worker_t *w);

/* Runs the request through the plugin chain in a new coroutine and acts on
 * the outcome: a response, or an upstream exchange. */
void aigw_lua_handle_request(aigw_req_t *r);
/* Runs the log phase for a finished request (when some plugin has one). */
void aigw_lua_log_phase(aigw_req_t *r);
/* Releases the request's coroutine and ctx. */
void aigw_lua_request_release(aigw_req_t *r);

/* lua_target.c: registers aigw_core.target() in the table on top of L. */
void aigw__lua_register_target(lua_State *L);

#endif
