"""A local rsync daemon on 127.0.0.1: the target of `sersyncpy demo`, the benchmarks and tests.

Writes its rsyncd.conf, secrets and client password file into a folder of its own, starts
`rsync --daemon --no-detach` as a child, waits until that PID listens, and stops it by PID.
Tests may bind it to another address inside a network namespace (`ip netns exec`).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Optional, Union

from sersyncpy.errors import SersyncpyError

USER = "sersync"
# How many ports a first start tries when another process takes the one it picked.
FIRST_START_ATTEMPTS = 5


class DaemonStartError(SersyncpyError):
    """The rsync daemon exited or never listened; the message quotes its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (callers must handle races)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_private(path: Path, text: str) -> None:
    """Write a file readable only by its owner, with no moment of wider permissions."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # O_CREAT's mode does not apply to an existing file
        f.write(text)


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop one child by its PID: SIGTERM, wait, then SIGKILL; always reaps it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait(timeout=timeout)


def _listening_inodes(pid: int, port: int) -> set[str]:
    """Socket inodes of TCP sockets in LISTEN state on `port` (IPv4 and IPv6), as seen
    from the network namespace of process `pid`."""
    inodes = set()
    # /proc/PID/net is the tables of PID's own namespace; /proc/net would be ours.
    for table in (f"/proc/{pid}/net/tcp", f"/proc/{pid}/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:  # no IPv6, or the process has exited
            continue
        for row in rows:
            fields = row.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "0A":  # 0A is TCP_LISTEN
                inodes.add(fields[9])
    return inodes


def _listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` owns a listening TCP socket on `port`."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(pid, port)}
    if not wanted:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                return True
        except FileNotFoundError:
            continue
    return False


class LocalDaemon:
    """One `rsync --daemon` on `address` serving `modules` (name -> directory) from `root`.

    Config, secrets, client password file and log live in `root`. `start()` is idempotent;
    `stop()` too. Only the first start may move to another port (when another process took
    ours); restarts reuse it. Modules run without chroot, so rsyncd drops a symlink target's
    leading "/" and escaping ".."; pass options={"use chroot": "yes"} to store them verbatim.
    With `netns` (a name from `ip netns`) the daemon runs inside that network namespace.
    """

    def __init__(
        self,
        root: Union[str, os.PathLike],
        modules: Mapping[str, Union[str, os.PathLike]],
        auth: bool = True,
        options: Optional[Mapping[str, str]] = None,
        port: Optional[int] = None,
        password: Optional[str] = None,
        address: str = "127.0.0.1",
        netns: Optional[str] = None,
    ) -> None:
        self.root = Path(root)
        self.modules = {name: Path(path) for name, path in modules.items()}
        self.auth = auth
        self.options = dict(options or {})  # extra settings for every module
        self.port = port if port is not None else free_port()
        self.user = USER
        self.address = address  # what --address binds, and what url() names
        self.netns = netns
        self.password = password or secrets.token_hex(12)
        self.conf = self.root / "rsyncd.conf"
        self.log_file = self.root / "rsyncd.log"
        self.secrets_file = self.root / "rsyncd.secrets"
        self.password_file = self.root / "client.password"  # the client side's copy
        self._output_file = self.root / "rsyncd.output"  # stdout/stderr, for start errors
        self._process: Optional[subprocess.Popen] = None
        self._config_written = False
        self._started_once = False

    def write_config(self) -> None:
        """Write rsyncd.conf, the secrets file and the client password file; make the modules.

        start() calls it once if nobody did, so later edits (a test's secrets) survive restarts.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        for path in self.modules.values():
            path.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self._config_text())
        # rsync refuses secrets and password files that others can read (strict modes).
        _write_private(self.secrets_file, f"{self.user}:{self.password}\n")
        _write_private(self.password_file, f"{self.password}\n")
        self._config_written = True

    def _config_text(self) -> str:
        lines = [
            "# Written by sersyncpy.localdaemon; every path is inside this directory.",
            "use chroot = no",
            "uid = root",
            "gid = root",
            "reverse lookup = no",  # no DNS wait on each connection
            # Without it each call waits ~85 ms on Nagle against delayed ACKs (DESIGN.md).
            "socket options = TCP_NODELAY",
            "max connections = 0",
            # In the config, not as --log-file: with rsync 3.5 a command-line --log-file
            # loses every line after "allowed access", transfer lines included.
            f"log file = {self.log_file}",
            f"lock file = {self.root / 'rsyncd.lock'}",  # not the shared /var/run default
            "transfer logging = yes",
            "log format = %o %f %l %b",
        ]
        for name, path in self.modules.items():
            lines += ["", f"[{name}]", f"path = {path}", "read only = no", "list = yes"]
            # Without chroot rsyncd defaults to "munge symlinks = yes" and stores every
            # target prefixed with /rsyncd-munged/; a replica needs them verbatim.
            lines.append("munge symlinks = no")
            if self.auth:
                lines += [f"auth users = {self.user}", f"secrets file = {self.secrets_file}"]
            lines += [f"{key} = {value}" for key, value in self.options.items()]
        return "\n".join(lines) + "\n"

    @property
    def pid(self) -> Optional[int]:
        """PID of the running daemon, None when stopped."""
        return self._process.pid if self.running else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def url(self, module: str) -> str:
        """rsync daemon address of a module, without port (callers pass --port)."""
        return f"{self.user}@{self.address}::{module}"

    def start(self, timeout: float = 10.0) -> None:
        """Start the daemon and return once it listens on self.port."""
        if self.running:
            return
        if not self._config_written:
            self.write_config()
        attempts = 1 if self._started_once else FIRST_START_ATTEMPTS
        for attempt in range(attempts):
            log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            if self._spawn_and_wait(timeout):
                self._started_once = True
                return
            new_log = self._log_since(log_offset)
            if "bind" not in new_log or attempt + 1 == attempts:
                raise DaemonStartError(
                    f"rsync daemon on port {self.port} exited with "
                    f"{self._process.returncode}; log:\n{new_log}"
                )
            self.port = free_port()  # another process took the port between pick and bind

    def _spawn_and_wait(self, timeout: float) -> bool:
        """Run rsync --daemon; True once it listens, False if it exited first."""
        argv = [
            "rsync", "--daemon", "--no-detach", f"--config={self.conf}", f"--port={self.port}",
            f"--address={self.address}",
        ]
        if self.netns is not None:
            # `ip netns exec` execs rsync, so the PID we wait on and stop is rsync's.
            argv = ["ip", "netns", "exec", self.netns, *argv]
        with open(self._output_file, "wb") as output:
            try:
                self._process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
                )
            except FileNotFoundError:
                raise DaemonStartError(f"{argv[0]} is not installed (not found on PATH)") from None
        process = self._process
        # Readiness is "our PID owns a LISTEN socket on the port", not a test connection:
        # a connect could reach another server on a stolen port, and each connect to rsyncd
        # adds a "connect from" line to the log that tests read.
        deadline = time.monotonic() + timeout
        while process.poll() is None and not _listens_on(process.pid, self.port):
            if time.monotonic() >= deadline:
                self.stop()
                raise DaemonStartError(
                    f"rsync daemon (pid {process.pid}) did not listen on port {self.port} "
                    f"within {timeout:g} s; log:\n{self._log_since(0)}"
                )
            time.sleep(0.02)
        return process.poll() is None

    def _log_since(self, offset: int) -> str:
        text = self.log_file.read_bytes()[offset:] if self.log_file.exists() else b""
        return (text + self._output_file.read_bytes()).decode("utf-8", "replace")

    def stop(self) -> None:
        """Terminate the daemon by PID and reap it; a no-op when already stopped."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(port={self.port}, pid={self.pid}, "
                f"modules={list(self.modules)})")
