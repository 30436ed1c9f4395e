"""The command line as users run it: --version, bad input, the demo (the README's main job)."""

import os
import subprocess
import sys

import pytest

from integration.conftest import confxml

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
