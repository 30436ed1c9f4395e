"""A local rsync daemon on 127.0.0.1: the built-in default target of `sersyncpy demo`.

Writes its rsyncd.conf (auth users, a mode-600 secrets file, TCP_NODELAY) into a folder of its
own, starts `rsync --daemon --no-detach` as a child, and stops it by PID.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

USER = "sersync"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_private(path: Path, text: str) -> None:
    path.write_text(text)
    os.chmod(path, 0o600)


class LocalDaemon:
    """An rsync daemon serving `modules` (name -> directory) from `home`."""

    def __init__(self, home: Path, modules: dict[str, Path], port: Optional[int] = None,
                 auth: bool = True, password: Optional[str] = None):
        self.home = Path(home)
        self.modules = {name: Path(path) for name, path in modules.items()}
        self.port = port or free_port()
        self.auth = auth
        self.user = USER
        self.password = password or secrets.token_hex(8)
        self.conf = self.home / "rsyncd.conf"
        self.secrets_file = self.home / "rsyncd.secrets"
        self.password_file = self.home / "rsync.password"  # the client side's copy
        self.log_file = self.home / "rsyncd.log"
        self.proc: Optional[subprocess.Popen] = None

    def write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        lines = [
            "use chroot = no", "uid = root", "gid = root", "max connections = 0",
            # Without it each call waits ~85 ms on Nagle against delayed ACKs (DESIGN.md).
            "socket options = TCP_NODELAY", "transfer logging = yes",
            "log format = %o %f %l %b",
        ]
        for name, path in self.modules.items():
            path.mkdir(parents=True, exist_ok=True)
            lines += [f"[{name}]", f"path = {path}", "read only = no", "list = yes"]
            if self.auth:
                lines += [f"auth users = {self.user}", f"secrets file = {self.secrets_file}"]
        self.conf.write_text("\n".join(lines) + "\n")
        _write_private(self.secrets_file, f"{self.user}:{self.password}\n")
        _write_private(self.password_file, self.password + "\n")

    def start(self, timeout: float = 10.0) -> None:
        if not self.conf.exists():
            self.write_config()
        self.proc = subprocess.Popen(
            ["rsync", "--daemon", "--no-detach", f"--config={self.conf}",
             f"--port={self.port}", "--address=127.0.0.1", f"--log-file={self.log_file}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace").strip()
                raise RuntimeError(f"rsync --daemon exited with {self.proc.returncode}: {err}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"rsync --daemon did not listen on port {self.port} in {timeout}s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()
