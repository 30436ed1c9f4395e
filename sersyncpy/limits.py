"""The kernel's inotify limits (fs.inotify.*): what to tell the operator when they are short,
and raising them when asked (--raise-inotify-limits). sersync wrote them at every start,
silently, even for -h; we never write one unless told to.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

logger = logging.getLogger(__name__)

PROC = "/proc/sys/fs/inotify"
HEADROOM = 1.25  # raise to what is needed plus a quarter, for directories still to come


def read(name: str) -> Optional[int]:
    try:
        with open(os.path.join(PROC, name)) as file:
            return int(file.read().strip())
    except (OSError, ValueError):
        return None


def wanted(needed: int) -> int:
    return int(needed * HEADROOM) + 1


def advice(name: str, current: Optional[int], needed: int) -> str:
    """One sentence naming the sysctl, its value and the value to set."""
    now = "unknown" if current is None else str(current)
    value = wanted(needed)
    return (f"fs.inotify.{name} is {now}; sersyncpy needs about {needed}: run "
            f"`sysctl -w fs.inotify.{name}={value}` and add `fs.inotify.{name} = {value}` to "
            f"/etc/sysctl.d/90-sersyncpy.conf (or start with --raise-inotify-limits)")


def raise_to(name: str, needed: int) -> bool:
    """Set fs.inotify.NAME to what is needed (plus headroom) if it is lower; True if set."""
    current = read(name)
    value = wanted(needed)
    if current is not None and current >= value:
        return False
    try:
        with open(os.path.join(PROC, name), "w") as file:
            file.write(f"{value}\n")
    except OSError as exc:
        logger.error("cannot raise fs.inotify.%s to %d: %s", name, value, exc.strerror or exc)
        return False
    logger.warning("raised fs.inotify.%s from %s to %d (--raise-inotify-limits); it stays so "
                   "until reboot", name, current, value)
    return True
