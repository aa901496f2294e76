/* lthread.h -- Lua threads the core can suspend and resume.
 *
 * Everything Lua runs that may wait on I/O (a request's handler, a timer's
 * callback, a spec under `aigw test`) runs as an lthread: a coroutine of a
 * VM generation, with a pending operation while it waits. A C function
 * that starts an asynchronous operation (sleep, HTTP, Redis) does
 *
 *     aigw_lthread_t *t = aigw_lthread_current(L);
 *     if (t == NULL) return aigw_lthread_cannot_yield(L, "aigw.sleep");
 *     ... start the operation, remembering t ...
 *     return aigw_lthread_wait(L, t, op, cancel_op);
 *
 * and, when the operation completes on the loop, pushes its results onto
 * t->co and calls aigw_lthread_resume(t, nresults). An operation must never
 * complete synchronously from inside the C function (return the results
 * directly instead). If the thread goes away while waiting (client gone,
 * generation retired, shutdown), cancel_op(op) is called once: the
 * operation must then never resume t, and frees itself when it can. */
#ifndef AIGW_LTHREAD_H
#define AIGW_LTHREAD_H

#include <lua.h>

typedef struct aigw_loop_s aigw_loop_t;
typedef struct aigw_gen_s aigw_gen_t;
typedef struct aigw_lthread_s aigw_lthread_t;

typedef void (*aigw_op_cancel_fn)(void *op);

/* What the owner of an lthread hears when its coroutine stops: it returned
 * (status 0, results on co's stack), failed (an error message on top), or
 * yielded a value that is not a pending operation (aigw.exit). */
typedef void (*aigw_lthread_done_fn)(aigw_lthread_t *t, int status);

struct aigw_lthread_s {
  lua_State *co;
  aigw_gen_t *gen; /* holds a reference on the generation */
  aigw_loop_t *loop;
  void *owner; /* the request or timer this thread runs for */
  aigw_lthread_done_fn done;
  void *op; /* the operation being waited on, or NULL */
  aigw_op_cancel_fn cancel;
  int ref;     /* registry reference keeping co alive */
  int running; /* inside lua_resume */
};

/* The lthread L is the running coroutine of, if it may yield there; NULL in
 * a phase that cannot wait (header_filter, body_filter, log, init_worker) or
 * inside a coroutine the plugin made itself. */
aigw_lthread_t *aigw_lthread_current(lua_State *L);

/* Returns (nil, "<what> cannot wait in this context") for the C function. */
int aigw_lthread_cannot_yield(lua_State *L, const char *what);

/* Parks t on op and yields: `return aigw_lthread_wait(L, t, op, cancel);` */
int aigw_lthread_wait(lua_State *L, aigw_lthread_t *t, void *op, aigw_op_cancel_fn cancel);

/* Resumes t with the nargs values pushed onto t->co. Calls t->done when the
 * coroutine stops (returns, fails or yields a non-operation). */
void aigw_lthread_resume(aigw_lthread_t *t, int nargs);

/* The loop a VM belongs to (from any of its coroutines). */
aigw_loop_t *aigw_lua_loop(lua_State *L);

/* --- for the owners of threads (lua_vm.c, timers, the test runner) --- */

/* A new thread in gen's VM, the function on top of gen's L moved onto it. */
aigw_lthread_t *aigw_lthread_new(aigw_gen_t *gen, void *owner, aigw_lthread_done_fn done);
/* Starts it with nargs arguments already pushed onto t->co. */
void aigw_lthread_start(aigw_lthread_t *t, int nargs);
/* Cancels any pending operation and frees the thread (not from inside done
 * of a thread still running: done may free it, the resume loop notices). */
void aigw_lthread_free(aigw_lthread_t *t);

#endif
