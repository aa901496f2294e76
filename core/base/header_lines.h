/* header_lines.h -- the one check on what the core writes into a message
 * head that it did not make itself.
 *
 * Header lines reach heads from Lua (handler results, aigw.exit,
 * header_filter, the lines the runtime adds to every response, the extra
 * lines of a proxied request, aigw.http) and from upstream answers. Whatever
 * made them, they go through here where they are appended (append_head in
 * http_response.c, build_head and build_fetch_head in upstream.c), so that
 * no value can end a line or the head early: a refused head is never sent.
 *
 * Each function returns NULL when its input is valid, else a static string
 * saying what is wrong ("CR, LF or NUL in a header value"), for the log and
 * for aigw.http's error. They read the bytes once and allocate nothing. */
#ifndef AIGW_HEADER_LINES_H
#define AIGW_HEADER_LINES_H

#include <stddef.h>

/* A block of lines, each `name ":" value CRLF`: the name a token (RFC 9110
 * 5.6.2), the value free of CR, LF and NUL, no empty line. n == 0 is valid. */
const char *aigw_header_lines_check(const char *p, size_t n);

/* One value (a reason phrase): no CR, LF or NUL. */
const char *aigw_header_value_check(const char *p, size_t n);

/* A request target: at least one byte, none a control byte (below 0x21, so
 * space, CR, LF and NUL included) or DEL. */
const char *aigw_header_path_check(const char *p, size_t n);

/* A method: a token. */
const char *aigw_header_token_check(const char *p, size_t n);

#endif
