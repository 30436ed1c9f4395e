"""The command line as users run it: --version, bad input, the demo (the README's main job)."""

import os
import subprocess
import sys
import time

import pytest
from conftest import free_port

from integration.conftest import confxml
from sersyncpy import faillog

SERSYNCPY = [sys.executable, "-m", "sersyncpy"]


def run(*args, cwd=None, timeout=60):
    return subprocess.run([*SERSYNCPY, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def assert_one_line_error(result, *needles, code=2):
    assert result.returncode == code, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_version_says_which_filter_queue_is_loaded():
    out = run("--version")
    assert out.returncode == 0
    assert out.stdout.startswith("sersyncpy ")
    assert "filterqueue=compiled" in out.stdout
    assert " watcher=fanotify" in out.stdout  # root, on this kernel
    as_nobody = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                *SERSYNCPY, "--version"], capture_output=True, text=True)
    assert "watcher=inotify (fanotify: it needs root" in as_nobody.stdout, as_nobody
    env = dict(os.environ, SERSYNCPY_NO_EXTENSIONS="1")
    out = subprocess.run([*SERSYNCPY, "--version"], capture_output=True, text=True, env=env)
    assert "filterqueue=python" in out.stdout


def test_missing_default_config_is_a_one_line_error(tmp_path):
    assert_one_line_error(run(cwd=tmp_path), "confxml.xml")


def test_malformed_config_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<head>\n  <sersync>\n    <localpath watch='/tmp'>\n</head>\n")
    assert_one_line_error(run("-o", str(bad)), "bad.xml:", "malformed")


def test_bad_port_names_the_element_and_value(tmp_path, daemon):
    src = tmp_path / "src"
    src.mkdir()
    text = confxml([(src, [(daemon, "backup")])]).replace(f'port="{daemon.port}"',
                                                          'port="99999"')
    conf = tmp_path / "c.xml"
    conf.write_text(text)
    assert_one_line_error(run("-o", str(conf)), "c.xml:", "remote", "99999")


def test_missing_watch_directory(tmp_path, daemon):
    conf = tmp_path / "c.xml"
    conf.write_text(confxml([(tmp_path / "nope", [(daemon, "backup")])]))
    assert_one_line_error(run("-o", str(conf)), "c.xml:", "nope")


@pytest.mark.parametrize("flag", [("-n", "x"), ("-n", "0"), ("--bogus",)])
def test_bad_flags_are_usage_errors(flag):
    assert_one_line_error(run(*flag))


def test_an_unknown_plugin_mode_is_a_one_line_error(tmp_path):
    assert_one_line_error(run("-m", "mail", cwd=tmp_path), "-m mail", "unknown plugin")


def test_demo_shows_a_file_arriving_in_the_module(tmp_path):
    out = run("demo", "--dir", str(tmp_path / "demo"), "--seconds", "1", timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ARRIVED:" in out.stdout
    module = tmp_path / "demo" / "module" / "hello.txt"
    assert module.read_bytes() == (tmp_path / "demo" / "source" / "hello.txt").read_bytes()


def test_a_bad_tuning_variable_is_a_one_line_error(tmp_path, daemon):
    src = tmp_path / "src"
    src.mkdir()
    conf = tmp_path / "c.xml"
    conf.write_text(confxml([(src, [(daemon, "backup")])]).replace(
        "/tmp/rsync_fail_log.sh", str(tmp_path / "fail.sh")))
    env = dict(os.environ, SERSYNCPY_DELETE_HOLD_SECONDS="soon")
    out = subprocess.run([*SERSYNCPY, "-o", str(conf)], capture_output=True, text=True,
                         env=env, timeout=60)
    assert_one_line_error(out, "SERSYNCPY_DELETE_HOLD_SECONDS", "soon")


# --- -t: check a config, start nothing ----------------------------------------------------

# Run before sersyncpy in the checked process: an audit hook names on stderr anything that
# would start something (a thread, a process, a socket, a lock) or write a file.
TRIPWIRE = r"""
import os, runpy, sys
STARTS = {"_thread.start_new_thread", "subprocess.Popen", "os.fork", "os.forkpty",
          "os.posix_spawn", "os.exec", "os.system", "socket.bind", "socket.connect",
          "socket.getaddrinfo", "os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.chmod",
          "os.chown", "os.truncate", "os.symlink", "os.link", "fcntl.flock", "fcntl.lockf",
          "ctypes.call_function"}
WRITES = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
def hook(event, args):
    if event in STARTS or (event == "open" and args[2] is not None and args[2] & WRITES):
        os.write(2, f"TRIPWIRE {event} {args!r}\n".encode("utf-8", "replace"))
sys.addaudithook(hook)
runpy.run_module("sersyncpy", run_name="__main__", alter_sys=True)
"""


def run_checked(*args, timeout=30):
    """`sersyncpy ARGS` under the tripwire, with no bytecode written by the imports."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-c", TRIPWIRE, *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def check_config(tmp_path, rsync_xml='<timeout start="true" time="100"/>'):
    """A config whose remotes cannot be reached (TEST-NET-1), metrics on, and its files."""
    src, state = tmp_path / "src", tmp_path / "state"
    src.mkdir()
    state.mkdir()
    conf = tmp_path / "c.xml"
    conf.write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<head version="2.5">
    <host hostip="localhost" port="8008"/>
    <metrics start="true" port="{free_port()}"/>
    <sersync>
        <localpath watch="{src}">
            <remote ip="192.0.2.1" name="www"/>
            <remote ip="192.0.2.2" name="www" port="8741"/>
        </localpath>
        <rsync>
            <commonParams params="-artuz"/>
            {rsync_xml}
        </rsync>
        <failLog path="{state}/fail.sh" timeToExecute="60"/>
    </sersync>
    <plugin name="socket">
        <localpath watch="{src}"><deshost ip="192.0.2.3" port="8009"/></localpath>
    </plugin>
</head>
""")
    return conf, src, state


def line_of(path, needle):
    text = path.read_text()
    return text[:text.index(needle)].count("\n") + 1


@pytest.mark.parametrize("mode", [(), ("-m", "socket")], ids=["sync", "m-socket"])
def test_check_prints_what_it_understood_and_starts_nothing(tmp_path, mode):
    conf, src, state = check_config(tmp_path)
    started = time.monotonic()
    out = run_checked("-t", *mode, "-o", str(conf))
    assert time.monotonic() - started < 20
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # no TRIPWIRE line: no thread, process, socket, lock or write
    lines = out.stdout.splitlines()
    assert f"root {src}" in lines
    assert lines[-1] == f"sersyncpy: {conf}: the config is valid (0 warnings); nothing was started"
    if mode:
        assert "plugin socket (-m)" in lines
        assert "  sends to 192.0.2.3:8009, format sersync: one connection per change, carrying " \
               "its path" in lines
    else:
        assert "  remote 192.0.2.2:8741::www (as the log names it)" in lines
        assert any(line.startswith("    live batch:   rsync -artuz --sockopts=TCP_NODELAY "
                                   "--contimeout=10 --port=8741 --timeout=100 --stats -r -I ")
                   for line in lines)
        assert "    changes gather for at most 200 ms while they keep coming (<latency " \
               "budgetMs>); the first after a quiet spell goes at once" in lines
        assert f"fail log: {state}/fail.sh (the paths not yet on a remote, replayed at the " \
               "next start)" in lines
        assert any(line.startswith("metrics: served at http://127.0.0.1:") for line in lines)
    # Nothing written: no fail log, no status file, no lock.
    assert not os.listdir(state)
    assert not os.path.exists(faillog.lock_path(str(state / "fail.sh")))


def test_check_lists_what_was_repaired_as_warnings(tmp_path):
    conf, _src, _state = check_config(tmp_path, '<timeout start=false time="100"/>')
    out = run_checked("-t", "-o", str(conf))
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    warnings = [line for line in out.stdout.splitlines() if line.startswith("  WARNING: ")]
    line = line_of(conf, "<timeout start=false")
    assert warnings == [f"  WARNING: {conf}: repaired what sersync 2.5 accepted: line {line}: "
                        "unquoted value of start"]
    assert "(1 warning)" in out.stdout.splitlines()[-1]
    assert "--timeout=60" in out.stdout  # start=false: rsync gets sersyncpy's own


def test_check_of_a_bad_value_is_the_one_line_error(tmp_path):
    conf, _src, _state = check_config(tmp_path)
    conf.write_text(conf.read_text().replace('port="8741"', 'port="abc"'))
    out = run_checked("-t", "-o", str(conf))
    line = line_of(conf, 'port="abc"')
    assert_one_line_error(out, f"c.xml:{line}:", '<remote port="abc">', "not a port number")
    assert out.stdout == ""


def test_help_mentions_check():
    out = run("--help")
    assert out.returncode == 0
    assert "-t " in out.stdout and "checks a config without running it" in " ".join(
        out.stdout.split())
