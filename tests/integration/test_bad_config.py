"""Bad configs, as users meet them: the real command stops at once with exit code 2 and one
line, FILE:LINE: <element attribute="value">: problem, and no traceback. A remote that turns
out bad only at run time (no such module) is logged and retried while the others replicate.
"""

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from integration.conftest import (
    Sersyncpy,
    confxml,
    remote_entry,
    same_tree,
    status_when,
    write,
)

SERSYNCPY = [sys.executable, "-m", "sersyncpy"]


@pytest.fixture
def good(tmp_path):
    """A valid config's text: a watch dir, an owner-only password file, a remote that is
    never contacted (the config check comes first)."""
    watch = tmp_path / "watch"
    watch.mkdir()
    password = tmp_path / "rsync.pas"
    password.write_text("secret\n")
    password.chmod(0o600)
    remote = SimpleNamespace(port=8730, user="sersync", password_file=password)
    text = confxml([(watch, [(remote, "backup")])])
    return text.replace('path="/tmp/rsync_fail_log.sh"', f'path="{tmp_path}/fail_log.sh"')


def line_of(text: str, needle: str) -> int:
    """1-based number of the only line of `text` that holds `needle`."""
    found = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(found) == 1, (needle, found)
    return found[0]


def run_config(tmp_path, text: str, seconds: float):
    conf = tmp_path / "bad.xml"
    conf.write_text(text)
    try:
        result = subprocess.run([*SERSYNCPY, "-o", str(conf)], capture_output=True, text=True,
                                cwd=tmp_path, timeout=seconds)
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed and reaped it
        pytest.fail(f"sersyncpy accepted the config and was still running after {seconds:g} "
                    f"s; its log:\n{exc.stderr.decode(errors='replace') if exc.stderr else ''}")
    return conf, result


def assert_config_error(tmp_path, text: str, line: int, *needles: str,
                        seconds: float = 60) -> str:
    """Run the CLI on `text`: exit 2, one stderr line naming FILE:LINE: and every needle."""
    conf, result = run_config(tmp_path, text, seconds)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{conf}:{line}:" in lines[0], lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert result.stdout == "", result.stdout
    return lines[0]


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def test_malformed_xml(tmp_path, good):
    # sersync 2.5's parser refused a bare "&" too (an unquoted value it took: see below).
    text = replace_once(good, '<debug start="false"/>', '<debug start="false" note="a & b"/>')
    error = assert_config_error(tmp_path, text, line_of(text, "<debug"), "malformed")
    assert '"&" in the value of note' in error, error


def test_missing_localpath(tmp_path, good):
    start, end = good.index("        <localpath"), good.index("</localpath>\n")
    text = good[:start] + good[end + len("</localpath>\n"):]
    assert_config_error(tmp_path, text, line_of(text, "<sersync>"), "<sersync>", "missing",
                        "<localpath>")


def test_missing_remote(tmp_path, good):
    start = good.index("            <remote")
    text = good[:start] + good[good.index("\n", start) + 1:]
    assert_config_error(tmp_path, text, line_of(text, "<localpath"), "<localpath", "missing",
                        "<remote>")


def test_missing_sersync(tmp_path, good):
    start, end = good.index("    <sersync>"), good.index("</sersync>\n")
    text = good[:start] + good[end + len("</sersync>\n"):]
    assert_config_error(tmp_path, text, line_of(text, "<head"), "<head", "missing", "<sersync>")


def test_timeout_that_is_not_a_number(tmp_path, good):
    text = replace_once(good, '<timeout start="true" time="20"/>',
                        '<timeout start="true" time="abc"/>')
    assert_config_error(tmp_path, text, line_of(text, "<timeout"), '<timeout time="abc">')


def test_timeout_too_large_for_rsync(tmp_path, good):
    text = replace_once(good, '<timeout start="true" time="20"/>',
                        '<timeout start="true" time="2147483648"/>')
    assert_config_error(tmp_path, text, line_of(text, "<timeout"),
                        '<timeout time="2147483648">', seconds=3)


def test_negative_fail_log_time_to_execute(tmp_path, good):
    text = replace_once(good, 'timeToExecute="60"', 'timeToExecute="-1"')
    assert_config_error(tmp_path, text, line_of(text, "<failLog"),
                        '<failLog timeToExecute="-1">')


def test_user_defined_port_out_of_range(tmp_path, good):
    text = replace_once(good, '<userDefinedPort start="false" port="874"/>',
                        '<userDefinedPort start="true" port="70000"/>')
    assert_config_error(tmp_path, text, line_of(text, "<userDefinedPort"),
                        '<userDefinedPort port="70000">')


def test_remote_port_that_is_not_a_number(tmp_path, good):
    text = replace_once(good, 'port="8730"', 'port="abc"')
    assert_config_error(tmp_path, text, line_of(text, "<remote"), '<remote port="abc">')


def test_unknown_plugin(tmp_path, good):
    text = replace_once(good, '<plugin start="false" name="command"/>',
                        '<plugin start="true" name="bogus"/>')
    assert_config_error(tmp_path, text, line_of(text, "<plugin"), '<plugin name="bogus">')


def test_missing_watch_directory(tmp_path, good):
    missing = tmp_path / "no-such-dir"
    text = replace_once(good, f'watch="{tmp_path / "watch"}"', f'watch="{missing}"')
    assert_config_error(tmp_path, text, line_of(text, "<localpath"),
                        f'<localpath watch="{missing}">', "does not exist")


def test_missing_password_file(tmp_path, good):
    missing = tmp_path / "no-such.pas"
    text = replace_once(good, f'passwordfile="{tmp_path / "rsync.pas"}"',
                        f'passwordfile="{missing}"')
    assert_config_error(tmp_path, text, line_of(text, "<auth"),
                        f'<auth passwordfile="{missing}">')


def test_password_file_readable_by_others(tmp_path, good):
    password = tmp_path / "rsync.pas"
    password.chmod(0o644)
    assert_config_error(tmp_path, good, line_of(good, "<auth"),
                        f'<auth passwordfile="{password}">', "0644")


def test_a_remote_with_an_unknown_module_is_logged_while_the_others_replicate(
    daemon, src, sersyncpy, tmp_path
):
    proc = sersyncpy(confxml([(src, [(daemon, "nosuchmodule"), (daemon, "backup")])]))
    for i in range(5):
        write(src / f"d{i % 2}/f{i}", b"%d" % i)
    same_tree(src, daemon.modules["backup"])
    # The bad remote's pushes fail (rsync's exit 5: unknown module) and stay pending.
    doc = status_when(proc, lambda d: remote_entry(d, daemon, "nosuchmodule")["failed_batches"]
                      >= 1, timeout=10, message=proc.log())
    bad = remote_entry(doc, daemon, "nosuchmodule")
    assert bad["consecutive_failures"] >= 1 and bad["pending"] >= 1, bad
    assert bad["last_error"].startswith("exit "), bad
    # Still running, still replicating to the good remote after the failures.
    write(src / "after", b"after the failure")
    same_tree(src, daemon.modules["backup"])
    assert proc.proc.poll() is None, proc.log()
    assert not os.path.exists(daemon.root / "nosuchmodule")
    assert proc.terminate() == 0, proc.log()


def test_a_config_sersync_ran_with_unquoted_values_and_gbk_comments_replicates(
    daemon, src, tmp_path
):
    """An Ansible role writes <timeout start=false ...>; Chinese comments are often GBK under
    encoding="UTF-8". sersync 2.5 ran such a file; so do we, and say so in one WARNING."""
    text = confxml([(src, [(daemon, "backup")])])
    home = tmp_path / "home"
    home.mkdir()
    proc = Sersyncpy(home, text)  # writes the text; the bytes below replace it
    data = replace_once(text, '<timeout start="true" time="20"/>',
                        '<timeout start=false time="100"/>').encode()
    comment = "<!-- 同步的目录和远程模块 -->".encode("gbk")
    data = data.replace(b"    <sersync>", b"    " + comment + b"\n    <sersync>")
    data = data.replace(b"/tmp/rsync_fail_log.sh", str(proc.fail_log).encode())
    proc.config.write_bytes(data)
    lines = data.decode("latin-1").splitlines()
    comment_line = 1 + next(i for i, line in enumerate(lines) if line.strip().startswith("<!--"))
    timeout_line = 1 + next(i for i, line in enumerate(lines) if "<timeout" in line)
    try:
        proc.start()
        write(src / "d/a.txt", b"replicated")
        same_tree(src, daemon.modules["backup"])
        # Log text kept: the WARNING that names each repair is the product.
        warnings = [line for line in proc.log().splitlines()
                    if " WARNING " in line and str(proc.config) in line]
        assert len(warnings) == 1, proc.log()
        assert warnings[0].endswith(
            f"{proc.config}: repaired what sersync 2.5 accepted: line {comment_line}: bytes "
            f"that are not UTF-8 in a comment; line {timeout_line}: unquoted value of start"
        ), warnings
        assert proc.terminate() == 0, proc.log()
    finally:
        proc.stop()
