"""The command line: version, help, unknown commands, `aigw check` (config
fields, listen addresses, plugins that do not load), and `aigw run` refusing
to serve a public address without keys."""
import re

import pytest

import harness
from harness import REPO_ROOT, run_cli


@pytest.fixture(autouse=True)
def _need_binary(aigw_path):
    return aigw_path


def one_line(stderr: str) -> str:
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert len(lines) == 1, "expected exactly one line on stderr, got %r" % stderr
    return lines[0]


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_version():
    r = run_cli(["version"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "aigw 0.1.0"


@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_help(flag):
    r = run_cli([flag])
    if flag != "--help" and r.returncode != 0:
        pytest.skip("%s is not an alias of --help" % flag)
    assert r.returncode == 0, r.stderr
    text = r.stdout.lower()
    assert "usage" in text
    for cmd in ("run", "check", "version"):
        assert cmd in text


def test_unknown_command_exits_2():
    r = run_cli(["frobnicate"])
    assert r.returncode == 2
    assert r.stderr.strip(), "an unknown command should say why on stderr"
    assert r.stdout == ""


def test_check_ok(tmp_path):
    conf = write(tmp_path, "ok.lua", harness.render_config(harness.base_config(harness.free_port())))
    r = run_cli(["check", str(conf)])
    assert r.returncode == 0, r.stderr
    assert "configuration ok" in r.stdout


def test_check_default_config():
    r = run_cli(["check", str(REPO_ROOT / "conf" / "gateway.lua")],
                env={"AIGW_LISTEN": "127.0.0.1:%d" % harness.free_port()})
    assert r.returncode == 0, r.stderr
    assert "configuration ok" in r.stdout


def test_check_lua_syntax_error_names_file_and_line(tmp_path):
    conf = write(tmp_path, "syntax.lua",
                 'return {\n  listen = "127.0.0.1:8080",\n  workers = 1 foo\n}\n')
    r = run_cli(["check", str(conf)])
    assert r.returncode == 1
    line = one_line(r.stderr)
    assert line.startswith("aigw: ")
    assert "%s:3:" % conf in line, line


def test_check_bad_size_names_file_and_field(tmp_path):
    cfg = harness.base_config(harness.free_port())
    cfg["server"]["max_body_size"] = "abc"
    conf = write(tmp_path, "badsize.lua", harness.render_config(cfg))
    r = run_cli(["check", str(conf)])
    assert r.returncode == 1
    line = one_line(r.stderr)
    assert line.startswith("aigw: %s" % conf), line
    assert "server.max_body_size" in line and "abc" in line


@pytest.mark.parametrize("name,text,words", [
    ("runtime.lua", 'error("boom from config")\n', ["boom from config"]),
    ("notable.lua", "return 42\n", []),
    ("badlisten.lua", 'return { listen = "not an address" }\n', ["listen"]),
    ("badtimeout.lua", 'return { listen = "127.0.0.1:1", server = { client_header_timeout = "soon" } }\n',
     ["client_header_timeout"]),
    ("badprovider.lua", 'return { listen = "127.0.0.1:1", providers = { x = { kind = "nope" } } }\n',
     ["providers.x"]),
])
def test_check_broken_config_one_line(tmp_path, name, text, words):
    conf = write(tmp_path, name, text)
    r = run_cli(["check", str(conf)])
    assert r.returncode == 1, (r.stdout, r.stderr)
    line = one_line(r.stderr)
    assert str(conf) in line, line
    for w in words:
        assert w in line, line


def test_check_missing_file(tmp_path):
    conf = tmp_path / "does-not-exist.lua"
    r = run_cli(["check", str(conf)])
    assert r.returncode == 1
    assert str(conf) in one_line(r.stderr)


def test_run_missing_config_fails(tmp_path):
    conf = tmp_path / "nope.lua"
    r = run_cli(["run", str(conf)], timeout=20)
    assert r.returncode != 0
    assert str(conf) in r.stderr


def test_run_refuses_public_listen_without_keys(tmp_path):
    """0.0.0.0 without api_keys must not start. If it wrongly starts, the test
    kills it at once (run_cli's deadline), so nothing stays listening."""
    cfg = harness.base_config(harness.free_port())
    cfg["listen"] = "0.0.0.0:%d" % harness.free_port()
    cfg["api_keys"] = []
    conf = write(tmp_path, "public.lua", harness.render_config(cfg))
    r = run_cli(["run", str(conf)], timeout=10)
    assert r.returncode != 0
    assert r.stderr.strip()
    assert re.search(r"api_keys|AIGW_API_KEYS|key", r.stderr, re.I), r.stderr


def test_run_refuses_public_listen_from_env():
    """The same through the default config, driven by the environment only."""
    r = run_cli(["run", str(REPO_ROOT / "conf" / "gateway.lua")], timeout=10,
                env={"AIGW_LISTEN": "0.0.0.0:%d" % harness.free_port(),
                     "AIGW_ADMIN_LISTEN": "127.0.0.1:%d" % harness.free_port(),
                     "AIGW_WORKERS": "1", "AIGW_API_KEYS": ""})
    assert r.returncode != 0
    assert r.stderr.strip()


def test_run_refuses_public_admin_listen_from_env():
    """A public admin listener needs admin keys: gateway keys do not do."""
    admin = "0.0.0.0:%d" % harness.free_port()
    r = run_cli(["run", str(REPO_ROOT / "conf" / "gateway.lua")], timeout=10,
                env={"AIGW_LISTEN": "127.0.0.1:%d" % harness.free_port(), "AIGW_ADMIN_LISTEN": admin,
                     "AIGW_WORKERS": "1", "AIGW_API_KEYS": "gw-key", "AIGW_ADMIN_KEYS": ""})
    assert r.returncode == 1, (r.stdout, r.stderr)
    line = one_line(r.stderr)
    assert admin in line and "admin_keys" in line and "AIGW_ADMIN_KEYS" in line, line


@pytest.mark.parametrize("env,words", [
    ({"AIGW_ADMIN_KEYS": "adm-secret\x01"}, ["admin_keys[1]", "visible ASCII"]),
    ({"AIGW_API_KEYS": "gw-a,adm-secret", "AIGW_ADMIN_KEYS": "adm-other,adm-secret"},
     ["admin_keys[2]", "api_keys[2]", "gateway key"]),
])
def test_check_bad_admin_keys_never_shows_them(env, words):
    r = run_cli(["check", str(REPO_ROOT / "conf" / "gateway.lua")],
                env=dict({"AIGW_LISTEN": "127.0.0.1:%d" % harness.free_port()}, **env))
    assert r.returncode == 1, (r.stdout, r.stderr)
    line = one_line(r.stderr)
    for w in words:
        assert w in line, line
    assert "secret" not in line, line


def test_check_unknown_provider_field(tmp_path):
    cfg = harness.base_config(harness.free_port())
    cfg["providers"]["openai"]["timeout"] = 5       # the field is `timeouts`
    conf = write(tmp_path, "provider-field.lua", harness.render_config(cfg))
    r = run_cli(["check", str(conf)])
    assert r.returncode == 1, (r.stdout, r.stderr)
    line = one_line(r.stderr)
    assert line.startswith("aigw: %s" % conf), line
    assert "providers.openai.timeout" in line, line


@pytest.mark.parametrize("listen", ["myhost:8080", "example.com:80", "127.0.0.1", "127.0.0.1:99999"])
def test_check_listen_must_be_an_address(tmp_path, listen):
    cfg = harness.base_config(harness.free_port())
    cfg["listen"] = listen
    conf = write(tmp_path, "listen.lua", harness.render_config(cfg))
    r = run_cli(["check", str(conf)])
    assert r.returncode == 1, (r.stdout, r.stderr)
    line = one_line(r.stderr)
    assert line.startswith("aigw: %s" % conf), line
    assert re.search(r"\blisten\b", line) and listen in line, line


# ---------------------------------------------------------------------------
# Plugins load from AIGW_PREFIX/plugins: a throw-away prefix with the repo's
# lua/ (a symlink), key-auth copied, and a plugin that does not load.

BROKEN_PLUGINS = {
    "syntax": ('-- broken: a syntax error on line 3\n'
               'local plugin = { name = "broken", priority = 1 }\n'
               'local x = = 1\n'
               'return plugin\n', 3),
    "runtime": ('-- broken: fails while loading, on line 4\n'
                'local plugin = { name = "broken", priority = 1 }\n'
                'local t = nil\n'
                'plugin.x = t.field\n'
                'return plugin\n', 4),
}


def plugin_prefix(tmp_path, broken_src):
    prefix = tmp_path / "prefix"
    (prefix / "plugins").mkdir(parents=True)
    (prefix / "lua").symlink_to(REPO_ROOT / "lua")
    (prefix / "plugins" / "key-auth.lua").write_bytes((REPO_ROOT / "plugins" / "key-auth.lua").read_bytes())
    (prefix / "plugins" / "broken.lua").write_text(broken_src)
    return prefix


@pytest.mark.parametrize("kind", sorted(BROKEN_PLUGINS))
@pytest.mark.parametrize("command", ["check", "run"])
def test_broken_plugin_names_file_and_line(tmp_path, kind, command):
    src, line_no = BROKEN_PLUGINS[kind]
    prefix = plugin_prefix(tmp_path, src)
    cfg = harness.base_config(harness.free_port())
    cfg["plugins"] = ["key-auth", "broken"]
    conf = write(tmp_path, "plugins.lua", harness.render_config(cfg))
    r = run_cli([command, str(conf)], timeout=15, env={"AIGW_PREFIX": str(prefix)})
    assert r.returncode == 1 if command == "check" else r.returncode != 0, (r.stdout, r.stderr)
    assert "plugins/broken.lua:%d:" % line_no in r.stderr, r.stderr
    if command == "check":
        assert "broken" in one_line(r.stderr)


def test_plugin_prefix_itself_works(tmp_path):
    """The same throw-away prefix with a plugin that loads: `aigw check` is
    happy, so the failures above are about broken.lua only."""
    prefix = plugin_prefix(tmp_path, 'return { name = "broken", priority = 1 }\n')
    cfg = harness.base_config(harness.free_port())
    cfg["plugins"] = ["key-auth", "broken"]
    conf = write(tmp_path, "plugins.lua", harness.render_config(cfg))
    r = run_cli(["check", str(conf)], env={"AIGW_PREFIX": str(prefix)})
    assert r.returncode == 0, r.stderr
    assert "configuration ok" in r.stdout
