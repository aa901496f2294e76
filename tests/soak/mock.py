#!/usr/bin/env python3
"""mock.py -- the soak's upstreams: tests/integration/mock_upstream.py run for a long time.

Two MockUpstream servers in one process, on 127.0.0.1:
- `good` answers every format by path (OpenAI, Anthropic, Gemini) and obeys the
  `x-mock-behavior` header (slow streams, 500s, 429s, streams cut short...);
- `hang` never answers: it reads the request and waits (`delay-headers`) until
  the peer goes away, whatever the request's headers say.

The integration mock keeps a record of every request and connection, which is
what tests read and what a 30-minute run cannot afford: a trimmer empties the
records every few seconds. The number of answers in progress is counted, so the
soak can tell whether the gateway leaves upstream work behind (a client that went
away must cancel its upstream request). `GET /__soak/status` on either server
answers, as JSON, for both: answers in progress, answers started, connections open.

It also holds `dead`, a port bound but not listening: connections to it are
refused, and no other program can take the port while the soak runs.

Prints one JSON line (`{"good": PORT, "hang": PORT, "dead": PORT}`) once both
listen, then runs until SIGTERM or SIGINT.
"""
import json
import signal
import socket
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from mock_upstream import MockUpstream  # noqa: E402

TRIM_EVERY = 5.0
HANG_SECONDS = 3600


class SoakMock(MockUpstream):
    """A MockUpstream that forgets what it served and counts answers in progress."""

    def __init__(self, name, stats, ignore_header=False, **kw):
        super().__init__(**kw)
        self.name = name
        self.stats = stats
        self.ignore_header = ignore_header

    async def _respond(self, conn, req):
        if req.path == "/__soak/status":
            body = json.dumps(self.stats.snapshot()).encode()
            await conn.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(body) + body)
            req.completed = True
            return True, False
        if self.ignore_header:
            req.headers = [(k, v) for k, v in req.headers if k.lower() != "x-mock-behavior"]
        self.stats.begin(self.name)
        try:
            return await super()._respond(conn, req)
        finally:
            self.stats.end(self.name)

    def trim(self):
        """Drop the records of finished requests and closed connections."""
        with self._cond:
            self.requests.clear()
            for cid in [cid for cid, c in self.conns.items() if c.closed.is_set()]:
                del self.conns[cid]
            self._held.clear()

    def open_conns_count(self):
        with self._cond:
            return sum(1 for c in self.conns.values() if not c.closed.is_set())


class Stats:
    def __init__(self):
        self.mu = threading.Lock()
        self.active = {}
        self.started = {}
        self.servers = {}

    def begin(self, name):
        with self.mu:
            self.active[name] = self.active.get(name, 0) + 1
            self.started[name] = self.started.get(name, 0) + 1

    def end(self, name):
        with self.mu:
            self.active[name] -= 1

    def snapshot(self):
        with self.mu:
            out = {name: {"active": self.active.get(name, 0), "started": self.started.get(name, 0)}
                   for name in self.servers}
        for name, srv in self.servers.items():
            out[name]["open_conns"] = srv.open_conns_count()
        return out


def main():
    stats = Stats()
    good = SoakMock("good", stats)
    hang = SoakMock("hang", stats, ignore_header=True,
                    default_behavior="delay-headers=%d" % HANG_SECONDS)
    stats.servers = {"good": good, "hang": hang}
    good.start()
    hang.start()
    dead = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    dead.bind(("127.0.0.1", 0))
    print(json.dumps({"good": good.port, "hang": hang.port,
                      "dead": dead.getsockname()[1]}), flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(TRIM_EVERY):
        good.trim()
        hang.trim()
    good.stop()
    hang.stop()
    dead.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
