"""Graceful shutdown: SIGTERM/SIGINT stop accepting, let in-flight requests
finish up to server.drain_timeout, and exit 0."""
import re
import signal
import socket
import threading

import pytest

import httpc
from harness import Elapsed, wait_until
from mock_upstream import chat_completion_body, sse_events

pytestmark = pytest.mark.slow

CT_JSON = ("Content-Type", "application/json")


def refused(port):
    s = socket.socket()
    s.settimeout(0.5)
    try:
        s.connect(("127.0.0.1", port))
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        s.close()


class InFlight(threading.Thread):
    """One request in a thread; .result is the Response or the exception."""

    def __init__(self, gw, behavior, stream=False, timeout=30):
        super().__init__(daemon=True)
        self.conn = gw.connect()
        self.req = httpc.build_request("POST", "/v1/chat/completions",
                                       [CT_JSON, ("x-mock-behavior", behavior)],
                                       httpc.chat_body("gpt-test", "x", stream))
        self.timeout = timeout
        self.result = None

    def run(self):
        try:
            self.conn.send(self.req)
            self.result = self.conn.read_response(timeout=self.timeout)
        except Exception as e:  # noqa: BLE001
            self.result = e


def test_sigterm_drains_in_flight_request(gateway, upstream):
    gw = gateway(upstream=upstream, server={"drain_timeout": 10})
    t = InFlight(gw, "delay-headers=3")
    t.start()
    upstream.wait_requests(1, 10)
    with Elapsed() as el:
        gw.send_signal(signal.SIGTERM)
        wait_until(lambda: refused(gw.port), 2.5, "the listener to close after SIGTERM")
        assert gw.alive(), "exited before the in-flight request finished"
        t.join(20)
        rc = gw.wait_exit(10)
    r = t.result
    assert isinstance(r, httpc.Response), r
    assert r.status == 200 and r.body == chat_completion_body("gpt-test")
    assert rc == 0
    assert el.seconds < 3 + 5, "shutdown took %.1fs" % el.seconds
    t.conn.close()


def test_response_finished_during_drain_closes_connection(gateway, upstream):
    gw = gateway(upstream=upstream, server={"drain_timeout": 10})
    t = InFlight(gw, "delay-headers=1")
    t.start()
    upstream.wait_requests(1, 10)
    gw.send_signal(signal.SIGTERM)
    t.join(15)
    assert isinstance(t.result, httpc.Response) and t.result.status == 200, t.result
    assert "close" in t.result.connection_tokens()
    assert t.conn.wait_closed(5)
    t.conn.close()
    assert gw.wait_exit(10) == 0


def test_sigterm_drains_in_flight_stream(gateway, upstream):
    gw = gateway(upstream=upstream, server={"drain_timeout": 10})
    c = gw.connect()
    c.send(httpc.build_request("POST", "/v1/chat/completions",
                               [CT_JSON, ("x-mock-behavior", "hold"), ("x-mock-key", "drain")],
                               httpc.chat_body("gpt-test", "x", True)))
    head = c.read_head(10)
    body = c.iter_body(head, 15)
    got = next(body)
    assert upstream.wait_held("drain", 5)
    gw.send_signal(signal.SIGTERM)
    wait_until(lambda: refused(gw.port), 2.5, "the listener to close after SIGTERM")
    upstream.release("drain")
    got += b"".join(body)
    c.close()
    assert got == b"".join(sse_events("gpt-test"))
    assert gw.wait_exit(10) == 0


def test_drain_timeout_bounds_shutdown(gateway, upstream):
    gw = gateway(upstream=upstream, server={"drain_timeout": 1}, expect_errors=True)
    t = InFlight(gw, "delay-headers=60", timeout=20)
    t.start()
    upstream.wait_requests(1, 10)
    with Elapsed() as el:
        gw.send_signal(signal.SIGTERM)
        rc = gw.wait_exit(8)
    assert 0.5 <= el.seconds <= 5, "exited after %.1fs with drain_timeout=1" % el.seconds
    assert rc == 0
    t.join(10)
    assert not t.is_alive(), "the cut-off client was left hanging"
    assert not (isinstance(t.result, httpc.Response) and t.result.status == 200)
    t.conn.close()


def test_idle_keepalive_connections_do_not_delay_shutdown(gateway):
    gw = gateway(server={"drain_timeout": 10, "keepalive_timeout": 60})
    conns = [gw.connect() for _ in range(3)]
    for c in conns:
        assert c.request("GET", "/health").status == 200
    with Elapsed() as el:
        gw.send_signal(signal.SIGTERM)
        rc = gw.wait_exit(8)
    assert rc == 0
    assert el.seconds < 3, "idle connections held shutdown for %.1fs" % el.seconds
    for c in conns:
        assert c.wait_closed(2)
        c.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("workers", [1, 2])
def test_idle_gateway_exits_0(gateway, sig, workers):
    gw = gateway(workers=workers)
    assert gw.chat("echo", "x").status == 200
    with Elapsed() as el:
        gw.send_signal(sig)
        rc = gw.wait_exit(8)
    assert rc == 0
    assert el.seconds < 3
    assert refused(gw.port)


def signal_pending(pid, sig):
    """True while sig is pending for the process (not yet delivered to a thread)."""
    bit = 1 << (sig - 1)
    try:
        with open("/proc/%d/status" % pid) as f:
            fields = dict(l.split(":", 1) for l in f if ":" in l)
    except FileNotFoundError:
        return False
    return any(int(fields.get(k, "0").strip(), 16) & bit for k in ("ShdPnd", "SigPnd"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_second_signal_while_draining_does_not_kill(gateway, upstream, sig):
    """A second SIGTERM (or SIGINT) during the drain must neither kill the
    process nor cut the request in flight: it still completes and the process
    exits 0."""
    name = signal.Signals(sig).name
    gw = gateway(upstream=upstream, server={"drain_timeout": 10})
    c = gw.connect()
    c.send(httpc.build_request("POST", "/v1/chat/completions",
                               [CT_JSON, ("x-mock-behavior", "hold"), ("x-mock-key", "twice")],
                               httpc.chat_body("gpt-test", "x", True)))
    head = c.read_head(10)
    assert head.status == 200, head
    body = c.iter_body(head, 20)
    got = next(body)
    assert upstream.wait_held("twice", 5)

    gw.send_signal(sig)
    wait_until(lambda: re.search(r"\b%s\b.*draining" % name, gw.log()) or not gw.alive(), 5,
               "the gateway to log that it is draining")
    assert gw.alive(), "the first %s killed the process:\n%s" % (name, gw.log())
    gw.send_signal(sig)
    # Delivered (no longer pending): a default disposition would have killed it by now.
    wait_until(lambda: not gw.alive() or not signal_pending(gw.pid, sig), 5,
               "the second %s to be delivered" % name)
    assert gw.alive(), "the second %s killed the draining process (%s)" % (name, gw.proc.poll())

    upstream.release("twice")
    got += b"".join(body)
    c.close()
    assert head.complete, "the in-flight stream was cut"
    assert got == b"".join(sse_events("gpt-test"))
    assert gw.wait_exit(10) == 0
