"""Whether a remote answers: a TCP connection to its daemon (or its sshd) within a second,
for a lane that backs off from a dead remote to retry as soon as it is back.
"""

from __future__ import annotations

import shlex
import socket

from sersyncpy import rsync

# rsync exit codes that mean the remote could not be reached or stopped answering.
UNREACHABLE_CODES = frozenset({10, 12, 30, 35})
PROBE_SECONDS = 1.0


def ssh_port(rsh: str) -> int:
    """The port the remote shell connects to: `-p N`, `-pN` or `-o Port=N`, else 22."""
    try:
        words = shlex.split(rsh)
    except ValueError:
        return 22
    port = 22
    for i, word in enumerate(words):
        value = None
        if word == "-p" and i + 1 < len(words):
            value = words[i + 1]
        elif word.startswith("-p") and len(word) > 2:
            value = word[2:]
        elif word == "-o" and i + 1 < len(words) and words[i + 1].lower().startswith("port="):
            value = words[i + 1].split("=", 1)[1]
        elif word.lower().startswith("-oport="):
            value = word.split("=", 1)[1]
        if value is not None and value.strip().isdigit():
            port = int(value)
    return port


def reachable(target: rsync.Target, timeout: float = PROBE_SECONDS) -> bool:
    """Whether the remote's daemon (or sshd) accepts a TCP connection within `timeout`."""
    port = ssh_port(target.rsh) if target.ssh else (target.port or 873)
    try:
        socket.create_connection((target.ip, port), timeout=timeout).close()
    except OSError:
        return False
    return True
