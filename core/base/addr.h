/* addr.h -- listen addresses (listen, admin_listen, a client's peer). */
#ifndef AIGW_ADDR_H
#define AIGW_ADDR_H

#include <sys/socket.h>

/* Splits "host:port" / "[v6]:port" into a sockaddr ("localhost" is
 * 127.0.0.1; "" and "*" are 0.0.0.0). Returns 0 or AIGW_ECONFIG. */
int aigw_parse_listen(const char *s, struct sockaddr_storage *out);
/* 1 when the address is loopback (127/8, ::1, or v4-mapped 127/8). */
int aigw_sockaddr_is_loopback(const struct sockaddr *sa);

#endif
