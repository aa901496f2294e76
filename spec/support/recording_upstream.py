#!/usr/bin/env python3
"""recording_upstream.py -- tests/integration/mock_upstream.py for specs that
need to see what the upstream received.

Starts the mock (default behaviour "json") and a second small HTTP server
beside it, then prints one line:

    mock upstream listening on http://127.0.0.1:P records http://127.0.0.1:Q

On the records server:
    GET  /last     the last request the mock received, as JSON:
                   {"method","target","headers":[[name,value]...],"body"}
                   (null when there was none)
    GET  /reset    forgets the requests received so far
    POST anything  200 text/html that is not JSON (an upstream that answers
                   garbage)
"""
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "integration"))
import mock_upstream  # noqa: E402

mock = mock_upstream.MockUpstream("127.0.0.1", 0, default_behavior="json").start()


class Records(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status, ctype, data):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/reset":
            mock.reset_records()
            return self._send(200, "application/json", b"{}")
        reqs = mock.request_list()
        r = reqs[-1] if reqs else None
        out = r and {"method": r.method, "target": r.target, "headers": r.headers,
                     "body": r.body.decode("utf-8", "replace")}
        self._send(200, "application/json", json.dumps(out).encode())

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        self.rfile.read(n)
        self._send(200, "text/html", b"<html><body>502 Bad Gateway</body></html>")

    def log_message(self, *args):
        pass


srv = ThreadingHTTPServer(("127.0.0.1", 0), Records)
threading.Thread(target=srv.serve_forever, daemon=True).start()
print("mock upstream listening on %s records http://127.0.0.1:%d" % (mock.url, srv.server_address[1]),
      flush=True)
stop = threading.Event()
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda *_: stop.set())
stop.wait()
srv.shutdown()
mock.stop()
