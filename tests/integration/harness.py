"""harness.py -- run the real `aigw` binary for integration tests.

Owns: locating the repo and the binary, free ports, rendering a Python dict to
a Lua config, a throw-away PKI made with the openssl CLI, and GatewayProcess,
which starts `aigw run`, waits for /health, and stops it by PID (SIGTERM, then
SIGKILL after a deadline). Fixtures in conftest.py wire these to pytest.
"""
from __future__ import annotations

import copy
import ctypes
import errno
import json
import os
import re
import select
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import httpc

REPO_ROOT = Path(__file__).resolve().parents[2]

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def _die_with_parent():
    """Runs in the child before exec: SIGKILL it if the test runner dies, so no
    gateway outlives a killed pytest (PR_SET_PDEATHSIG, Linux)."""
    if _prctl is not None:
        _prctl(1, signal.SIGKILL)
LOOPBACK = "127.0.0.1"

# `2026-11-24T01:02:03.123Z error [w1] ...`
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z (debug|info|warn|error) \[")
ERROR_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\S+Z error \[", re.M)
# Sanitizer and crash reports fail a test whatever it expected.
CRASH_LINE = re.compile(r"(ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error: |"
                        r"WARNING: ThreadSanitizer|Segmentation fault|Aborted \(core dumped\))")


def aigw_bin() -> Path:
    p = os.environ.get("AIGW_BIN")
    if not p:
        return REPO_ROOT / "build" / "aigw"
    path = Path(p)
    if not path.is_absolute() and not path.exists():
        path = REPO_ROOT / path
    return path.resolve()


_ports_given: set = set()


def free_port() -> int:
    """A port nothing listens on right now (bind port 0, read it, close),
    never one this process was given before: two calls in a row may
    otherwise get the same port back, and a gateway told to listen twice
    on it would share it between its listeners."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port


def wait_until(cond: Callable[[], object], timeout: float, what: str, interval: float = 0.02):
    """Poll cond() until truthy; return its value or raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def access_line(gw, request_id: str, timeout: float = 5) -> dict:
    """The access-log plugin's line for a request, as a dict of its fields. The
    log phase runs after the response is complete: the line follows it closely,
    so it is polled (a log line is not an event a test can wait on)."""
    def find():
        for line in gw.log().splitlines():
            if " access " in line and "request_id=" + request_id in line:
                return dict(re.findall(r"(\w+)=(\S+)", line.split(" access ", 1)[1]))
        return None
    return wait_until(find, timeout, "the access line of " + request_id)


def wait_logged(gw, needle: str, timeout: float = 5, regex: bool = False) -> str:
    """The log once it holds needle (a substring, or a regex with regex=True).
    Lines are written by the gateway's log writer a few milliseconds after
    they are logged (at once for warn and error), so a test polls for them."""
    def find():
        text = gw.log()
        found = re.search(needle, text) if regex else needle in text
        return text if found else None
    return wait_until(find, timeout, "%r in the log" % needle)


def plugin_prefix(tmp_path: Path, plugins: Dict[str, str]) -> Path:
    """A prefix (AIGW_PREFIX) with the repository's lua/ and these plugin files
    ({"name.lua": source}, "dir/name.lua" for a module in a directory)."""
    prefix = tmp_path / "prefix"
    (prefix / "plugins").mkdir(parents=True, exist_ok=True)
    if not (prefix / "lua").exists():
        (prefix / "lua").symlink_to(REPO_ROOT / "lua")
    for name, src in plugins.items():
        path = prefix / "plugins" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(src)
    return prefix


class Elapsed:
    """with Elapsed() as t: ...; t.seconds"""

    def __enter__(self):
        self.start = time.monotonic()
        self.seconds = None
        return self

    def __exit__(self, *exc):
        self.seconds = time.monotonic() - self.start

    def now(self) -> float:
        return time.monotonic() - self.start


# ---------------------------------------------------------------------------
# Lua config rendering

_LUA_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LUA_KEYWORDS = {"and", "break", "do", "else", "elseif", "end", "false", "for", "function",
                 "goto", "if", "in", "local", "nil", "not", "or", "repeat", "return", "then",
                 "true", "until", "while"}


class Lua:
    """Raw Lua source inside a rendered config: Lua('os.getenv("X")')."""

    def __init__(self, src: str):
        self.src = src


def lua_string(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif o < 32 or o == 127:
            out.append("\\%03d" % o)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def lua_literal(v, indent: int = 0) -> str:
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(v, Lua):
        return v.src
    if v is None:
        return "nil"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return lua_string(v)
    if isinstance(v, (list, tuple)):
        if not v:
            return "{}"
        return "{\n" + "".join("%s%s,\n" % (inner, lua_literal(x, indent + 1)) for x in v) + pad + "}"
    if isinstance(v, dict):
        if not v:
            return "{}"
        items = []
        for k, x in v.items():
            if x is None:
                continue
            if isinstance(k, str) and _LUA_IDENT.match(k) and k not in _LUA_KEYWORDS:
                key = k
            else:
                key = "[%s]" % lua_literal(k)
            items.append("%s%s = %s,\n" % (inner, key, lua_literal(x, indent + 1)))
        return "{\n" + "".join(items) + pad + "}"
    raise TypeError("cannot render %r as Lua" % (v,))


def render_config(cfg: dict) -> str:
    return "-- written by tests/integration (harness.py)\nreturn " + lua_literal(cfg) + "\n"


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def base_config(port: int, upstream_base_url: Optional[str] = None) -> dict:
    """A minimal config: one worker, no admin listener, loopback-only auth,
    the built-in mock provider, and `openai` pointing at the mock upstream (or at
    a port where nothing listens)."""
    return {
        "listen": "%s:%d" % (LOOPBACK, port),
        "admin_listen": False,
        "workers": 1,
        "log_level": "info",
        "server": {"drain_timeout": 5},
        "plugins": ["key-auth"],
        "providers": {
            "openai": {
                "kind": "openai",
                "base_url": upstream_base_url or "http://%s:%d/v1" % (LOOPBACK, free_port()),
                "api_key": "sk-upstream-test",
                "timeouts": {"connect": 5, "read": 30, "total": 60},
            },
            "mock": {"kind": "mock"},
        },
    }


# ---------------------------------------------------------------------------
# The gateway process


class GatewayError(AssertionError):
    pass


class GatewayProcess:
    """A running `aigw run CONF`. stderr (the log) goes to a file, read any time."""

    def __init__(self, bin_path: Path, conf_path: Path, workdir: Path, port: Optional[int],
                 env: Optional[Dict[str, str]] = None, args: Optional[List[str]] = None,
                 expect_errors: bool = False, name: str = "aigw", drain_timeout: float = 10,
                 cwd: Optional[Path] = None):
        self.bin = bin_path
        self.conf_path = conf_path
        self.port = port
        self.host = LOOPBACK
        self.expect_errors = expect_errors
        self.drain_timeout = drain_timeout
        self.log_path = workdir / ("%s.log" % name)
        self.out_path = workdir / ("%s.stdout" % name)
        self.stopped_by_test = False
        self.killed = False
        self.returncode: Optional[int] = None
        full_env = dict(os.environ)
        full_env["AIGW_PREFIX"] = str(REPO_ROOT)
        full_env.update(env or {})
        argv = [str(bin_path)] + (args if args is not None else ["run", str(conf_path)])
        self.argv = argv
        with open(self.log_path, "wb") as err, open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         env=full_env, cwd=str(cwd or workdir), start_new_session=True,
                                         preexec_fn=_die_with_parent)
        self.pid = self.proc.pid

    # -- info ------------------------------------------------------------------

    @property
    def url(self) -> str:
        return "http://%s:%d" % (self.host, self.port)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stdout(self) -> str:
        try:
            return self.out_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def error_lines(self) -> List[str]:
        return [l for l in self.log().splitlines() if ERROR_LINE.match(l)]

    def crash_lines(self) -> List[str]:
        return [l for l in self.log().splitlines() if CRASH_LINE.search(l)]

    def alive(self) -> bool:
        return self.proc.poll() is None

    # -- requests ----------------------------------------------------------------

    def request(self, method: str, target: str, headers=None, body: Optional[bytes] = None,
                timeout: float = 10.0, **kw) -> httpc.Response:
        return httpc.request(self.port, method, target, headers, body, timeout=timeout, **kw)

    def chat(self, model: str = "echo", content: str = "hello", stream: bool = False,
             headers=None, path: str = "/v1/chat/completions", timeout: float = 10.0,
             **extra) -> httpc.Response:
        hdrs = [("Content-Type", "application/json")] + httpc._header_list(headers)
        return self.request("POST", path, hdrs, httpc.chat_body(model, content, stream, **extra),
                            timeout=timeout)

    def connect(self, timeout: float = 5.0, **kw) -> httpc.Conn:
        return httpc.Conn.open(self.port, timeout=timeout, **kw)

    # -- lifecycle -----------------------------------------------------------------

    def wait_healthy(self, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GatewayError("aigw exited with %s before serving /health\n--- log ---\n%s"
                                   % (self.proc.returncode, self.log()[-6000:]))
            try:
                r = httpc.request(self.port, "GET", "/health", timeout=2)
                if r.status == 200:
                    return r
                last = "status %d" % r.status
            except (OSError, httpc.Closed, TimeoutError, ValueError, IndexError) as e:
                last = repr(e)
            time.sleep(0.02)
        raise GatewayError("aigw did not answer GET /health with 200 within %.0fs (last: %s)\n"
                           "--- log ---\n%s" % (timeout, last, self.log()[-6000:]))

    def send_signal(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def wait_exit(self, timeout: float) -> int:
        """Exit code, or TimeoutError if still running after timeout."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError("aigw (pid %d) still running after %.1fs" % (self.pid, timeout))
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout: Optional[float] = None) -> int:
        """Signal, wait up to timeout (default drain_timeout + 10s), then SIGKILL."""
        if timeout is None:
            timeout = self.drain_timeout + 10
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.returncode = self.proc.returncode
        return self.returncode


def run_cli(args: List[str], timeout: float = 20.0, env: Optional[Dict[str, str]] = None,
            cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """Run `aigw ARGS` to completion (killed by pid past timeout)."""
    full_env = dict(os.environ)
    full_env["AIGW_PREFIX"] = str(REPO_ROOT)
    full_env.update(env or {})
    proc = subprocess.Popen([str(aigw_bin())] + args, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env,
                            cwd=str(cwd) if cwd else None, start_new_session=True,
                            preexec_fn=_die_with_parent)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(10)
        raise TimeoutError("aigw %s did not finish within %.0fs; stderr: %r"
                           % (" ".join(args), timeout, err[-2000:]))
    return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(errors="replace"),
                                       err.decode(errors="replace"))


# ---------------------------------------------------------------------------
# A throw-away PKI


@dataclass
class PKI:
    dir: Path
    ca: Path            # CA certificate (PEM) to trust
    cert: Path          # server cert for localhost / 127.0.0.1, signed by ca
    key: Path
    wrong_cert: Path    # server cert signed by ca for another name only
    wrong_key: Path


def server_ssl_context(cert: Path, key: Path):
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def _openssl(args: List[str], cwd: Path):
    r = subprocess.run(["openssl"] + args, cwd=str(cwd), capture_output=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), r.stderr.decode()))


def make_pki(d: Path) -> PKI:
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(["req", "-x509"] + ec + ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
              "-subj", "/CN=aigw integration test CA",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)
    for name, san in (("server", "DNS:localhost,IP:127.0.0.1"),
                      ("wrong", "DNS:wrong.example.invalid")):
        cn = "localhost" if name == "server" else "wrong.example.invalid"
        _openssl(["req"] + ec + ["-keyout", name + ".key", "-out", name + ".csr",
                                 "-subj", "/CN=" + cn], d)
        (d / (name + ".ext")).write_text(
            "subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n" % san)
        _openssl(["x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                  "-CAcreateserial", "-out", name + ".pem", "-days", "2",
                  "-extfile", name + ".ext"], d)
    return PKI(d, d / "ca.pem", d / "server.pem", d / "server.key",
               d / "wrong.pem", d / "wrong.key")


# ---------------------------------------------------------------------------
# A listener whose accept queue is full: connecting to it hangs.


class BlackholeListener:
    """A loopback listener with backlog 0 that never accepts, its queue filled so
    that a further connect() gets no answer (its SYN is dropped): what a test
    needs to see an upstream *connect* timeout without leaving the machine."""

    def __init__(self, max_fill: int = 64, probe: float = 0.3):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers: List[socket.socket] = []
        for _ in range(max_fill):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            rc = s.connect_ex((LOOPBACK, self.port))
            self.fillers.append(s)
            if rc == 0:
                continue
            if rc not in (errno.EINPROGRESS, errno.EAGAIN):
                raise RuntimeError("blackhole: connect failed: %s" % os.strerror(rc))
            _, w, _ = select.select([], [s], [], probe)
            if not w:
                return          # this connect hangs: the queue is full
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise RuntimeError("blackhole: connect failed: %s" % os.strerror(err))
        self.close()
        raise RuntimeError("blackhole: could not fill the accept queue with %d connections"
                           % max_fill)

    def close(self):
        for s in self.fillers:
            s.close()
        self.fillers = []
        self.sock.close()


def json_error(resp: httpc.Response) -> dict:
    """The body of an error response as a dict, with a readable failure."""
    try:
        return json.loads(resp.body)
    except ValueError:
        raise AssertionError("error body is not JSON: %r" % (resp,))
