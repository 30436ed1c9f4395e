"""Fixtures that run the real sersyncpy command against real rsync daemons: a confxml.xml
writer, a process fixture that waits for the watches and stops the process by its PID, and
readers of the status file the process rewrites every 2 s (what tests assert on, rather than
the wording of its log)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Callable, Optional, Union
from xml.sax.saxutils import quoteattr

import pytest
from conftest import assert_trees_equal, stop_process, trees_equal, wait_until

from sersyncpy import fanwatch

INOTIFY_DEFAULTS = {
    "delete": True, "createFolder": True, "createFile": False, "closeWrite": True,
    "moveFrom": True, "moveTo": True, "attrib": False, "modify": False,
}


def _flag(value: bool) -> str:
    return "true" if value else "false"


def confxml(
    roots: list[tuple[Path, list]], *, params: str = "-a", excludes: tuple[str, ...] = (),
    crontab_excludes: tuple[str, ...] = (), keep_dotfiles: bool = True,
    timeout: Optional[int] = 20, password_file: Optional[Path] = None, debug: bool = False,
    **inotify: bool,
) -> str:
    """A confxml.xml for `roots`: [(watch dir, [(RsyncDaemon, module), ...]), ...]."""
    flags = {**INOTIFY_DEFAULTS, **inotify}
    inotify_xml = "\n".join(f'        <{k} start="{_flag(v)}"/>' for k, v in flags.items())
    filter_xml = "\n".join(f"        <exclude expression={quoteattr(e)}/>" for e in excludes)
    cron_xml = "\n".join(f"            <exclude expression={quoteattr(e)}/>"
                         for e in crontab_excludes)
    blocks, user, pw = [], "", password_file
    for watch, remotes in roots:
        lines = [f"        <localpath watch={quoteattr(str(watch))}>"]
        for daemon, module in remotes:
            address = getattr(daemon, "address", "127.0.0.1")  # a daemon in a namespace
            lines.append(f"            <remote ip={quoteattr(address)} name={quoteattr(module)} "
                         f"port=\"{daemon.port}\"/>")
            user = daemon.user
            pw = pw or daemon.password_file
        lines.append("        </localpath>")
        blocks.append("\n".join(lines))
    timeout_xml = (f'<timeout start="true" time="{timeout}"/>' if timeout
                   else '<timeout start="false" time="100"/>')
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<head version="2.5">
    <host hostip="localhost" port="0"/>
    <debug start="{_flag(debug)}"/>
    <fileSystem xfs="false"/>
    <filter start="{_flag(bool(excludes))}" keepDotfiles="{_flag(keep_dotfiles)}">
{filter_xml}
    </filter>
    <inotify>
{inotify_xml}
    </inotify>
    <sersync>
{chr(10).join(blocks)}
        <rsync>
            <commonParams params={quoteattr(params)}/>
            <auth start="true" users="{user}" passwordfile={quoteattr(str(pw))}/>
            <userDefinedPort start="false" port="874"/>
            {timeout_xml}
            <ssh start="false"/>
        </rsync>
        <failLog path="/tmp/rsync_fail_log.sh" timeToExecute="60"/>
        <crontab start="false" schedule="600">
            <crontabfilter start="{_flag(bool(crontab_excludes))}">
{cron_xml}
            </crontabfilter>
        </crontab>
        <plugin start="false" name="command"/>
    </sersync>
</head>
"""


def label(daemon, module: str = "backup") -> str:
    """How sersyncpy names a remote of the local daemon in its log and status file."""
    return f"127.0.0.1:{daemon.port}::{module}"


def read_status(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def remote_entry(doc: dict, daemon, module: str = "backup") -> dict:
    (entry,) = [r for r in doc["remotes"] if r["remote"] == label(daemon, module)]
    return entry


def status_when(where: Union[Path, Sersyncpy], predicate: Callable[[dict], object],
                timeout: float = 15.0, message: str = "status file") -> dict:
    """The first status document (re-read as it is rewritten) for which predicate holds:
    of the file at `where`, or of the Sersyncpy `where` (its status file, written by its
    current process: a restarted one's predecessor left its last document there)."""
    def check():
        if isinstance(where, Path):
            doc = read_status(where)
        else:
            doc = where.status()
        return doc if doc is not None and predicate(doc) else None
    return wait_until(check, timeout=timeout, interval=0.1, message=message)


def status_after(where: Union[Path, Sersyncpy], moment: float,
                 predicate: Callable[[dict], object] = lambda doc: True,
                 timeout: float = 15.0, message: str = "status file") -> dict:
    """The first status document written after `moment` (time.time()) for which predicate
    holds: what the process saw once something had happened."""
    return status_when(where, lambda doc: doc["updated"] > moment and predicate(doc),
                       timeout=timeout, message=message)


def as_user(uid: int, argv: list[str]) -> list[str]:
    """argv run as `uid` (its own group, no others, no capabilities), by setpriv."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *argv]


class Sersyncpy:
    """One `python -m sersyncpy` process; its log (stderr) goes to a file in its folder.
    `env` is added to the environment it inherits (a None value removes that variable).
    With `user` (a uid) it runs as that user, its folder (and config) that user's."""

    def __init__(self, home: Path, config_text: str, flags: tuple[str, ...] = (),
                 env: Optional[Mapping[str, Optional[str]]] = None,
                 user: Optional[int] = None):
        self.home = home
        self.config = home / "confxml.xml"
        self.fail_log = home / "fail_log.sh"  # each process its own, so tests run side by side
        self.config.write_text(config_text.replace("/tmp/rsync_fail_log.sh", str(self.fail_log)))
        self.log_path = home / "sersyncpy.log"
        # Beside the fail log, as the default says (a test that moves either says where).
        self.status_path = home / "fail_log.status.json"
        self.flags = flags
        self.env = dict(env or {})
        self.user = user
        if user is not None:
            os.chown(home, user, user)
            os.chown(self.config, user, user)
        self.proc: Optional[subprocess.Popen] = None

    def _environment(self) -> Optional[dict[str, str]]:
        if not self.env:
            return None
        env = {**os.environ, **self.env}
        return {name: value for name, value in env.items() if value is not None}

    def start(self, wait: bool = True) -> Sersyncpy:
        self.log_path.write_text("")
        argv = [sys.executable, "-m", "sersyncpy", "-o", str(self.config), *self.flags]
        if self.user is not None:
            argv = as_user(self.user, argv)  # setpriv execs: the pid stays the process's
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.home,
                env=self._environment(),
            )
        if wait:
            wait_until(lambda: "replicating to" in self.log() or self.proc.poll() is not None,
                       timeout=30, message="sersyncpy did not start")
            assert self.proc.poll() is None, f"sersyncpy exited early:\n{self.log()}"
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, as systemd stops it; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def status(self) -> Optional[dict]:
        """The status document this process last wrote (None before its first)."""
        doc = read_status(self.status_path)
        if doc is None or self.proc is None or doc.get("pid") != self.proc.pid:
            return None
        return doc


@pytest.fixture
def sersyncpy(tmp_path_factory):
    """Factory: sersyncpy(config_text, *flags, env=None, user=None, home=None) -> a started
    Sersyncpy, stopped at teardown; `env` adds to the environment it inherits (None removes
    a variable), `user` runs it as that uid, `home` (an empty directory) is its folder in
    place of a new one (one that `user` can reach: tmp_path's parents are root's alone)."""
    started: list[Sersyncpy] = []

    def factory(config_text: str, *flags: str, wait: bool = True,
                env: Optional[Mapping[str, Optional[str]]] = None,
                user: Optional[int] = None, home: Optional[Path] = None) -> Sersyncpy:
        proc = Sersyncpy(home or tmp_path_factory.mktemp("sersyncpy"), config_text, flags,
                         env, user)
        started.append(proc)
        return proc.start(wait=wait)

    yield factory
    for proc in started:
        proc.stop()


FANOTIFY_UNAVAILABLE = fanwatch.probe()


@pytest.fixture(params=["inotify", "fanotify"])
def each_watcher(request, monkeypatch) -> str:
    """Runs a test once per watcher, forced by SERSYNCPY_WATCHER in the environment the
    sersyncpy processes inherit; fanotify is skipped, saying why, where it cannot run."""
    if request.param == "fanotify" and FANOTIFY_UNAVAILABLE:
        pytest.skip(f"fanotify cannot run here: {FANOTIFY_UNAVAILABLE}")
    monkeypatch.setenv("SERSYNCPY_WATCHER", request.param)
    return request.param


@pytest.fixture
def tmpfs() -> Iterator[Callable[[Path, str], Path]]:
    """Factory: tmpfs(directory, size) mounts a tmpfs of `size` there; unmounted at teardown
    (unless the test did), also when the test failed. Skips when mounting is not permitted
    here."""
    mounted: list[Path] = []

    def factory(directory: Path, size: str) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755",
                                 "tmpfs", str(directory)], capture_output=True, text=True,
                                timeout=30)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(directory)
        return directory

    yield factory
    for directory in reversed(mounted):
        if os.path.ismount(directory) and subprocess.run(
                ["umount", str(directory)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], check=True, capture_output=True)


def unmount(directory: Path) -> None:
    """Unmount `directory`, retrying while a process (an rsync reading it) holds it."""
    wait_until(lambda: subprocess.run(["umount", str(directory)],
                                      capture_output=True).returncode == 0,
               timeout=10, message=f"{directory} could not be unmounted")


@pytest.fixture
def src(tmp_path) -> Path:
    path = tmp_path / "src"
    path.mkdir()
    return path


def write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def same_tree(src: Path, dst: Path, timeout: float = 20.0, ignore=(), settle: float = 0.3) -> None:
    """Wait until dst equals src and stays equal for `settle` seconds (a change pushed twice,
    such as a file written while its first push ran, passes through equal); if it never
    does, assert it with the full list of differences. Not compared once more after settling:
    a redundant push starting then (files re-sent because their events came after the
    directory's own push had copied them) shows rsync's temporary files for a moment."""
    equal_since: list[float] = []

    def settled() -> bool:
        if not trees_equal(src, dst, ignore=ignore):
            equal_since.clear()
            return False
        if not equal_since:
            equal_since.append(time.monotonic())
        return time.monotonic() - equal_since[0] >= settle

    try:
        wait_until(settled, timeout=timeout, interval=0.05)
        return
    except AssertionError:
        pass
    assert_trees_equal(src, dst, ignore=ignore)


@pytest.fixture
def netns_host():
    """Factory: netns_host() -> a new integration.netns.Host (a namespace joined by a veth
    pair, with .name, .ip, .host_ip, link_down(), link_up()). Every one is destroyed at
    teardown, also when the test failed. Skips when namespaces are not permitted (not root).
    Request it before rsync_daemon, so daemons inside are stopped before their namespace goes.
    """
    from integration.netns import Host, NetnsUnavailable

    made: list[Host] = []

    def factory() -> Host:
        try:
            host = Host.create()
        except NetnsUnavailable as error:
            pytest.skip(f"network namespaces not permitted here: {error}")
        made.append(host)
        return host

    yield factory
    for host in made:
        host.destroy()
