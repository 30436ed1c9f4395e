"""From a Config to the parts that run: the watcher's Rules, each remote's rsync Target, the
<filter> predicate for what rsync sends whole, and the SERSYNCPY_* tuning from the environment.
Pure; nothing here starts anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from sersyncpy import config as configmod
from sersyncpy import convert, statusfile
from sersyncpy.deletionhold import DELETE_HOLD_SECONDS
from sersyncpy.errors import UsageError
from sersyncpy.rsync import Target
from sersyncpy.rules import Excluded, Rules
from sersyncpy.watcher import UNWATCHED_RESYNC_SECONDS

WATCHERS = configmod.WATCHERS


def rules_for(cfg: configmod.Config) -> Rules:
    i = cfg.inotify
    return Rules(
        delete=i.delete, create_file=i.create_file, close_write=i.close_write,
        move_from=i.move_from, move_to=i.move_to, attrib=i.attrib, modify=i.modify,
        excludes=cfg.filter.compiled() if cfg.filter.start else (),
        keep_dotfiles=cfg.filter.keep_dotfiles,
    )


def excluded_by(cfg: configmod.Config) -> Optional[Excluded]:
    """The <filter> regexes, for what rsync sends whole; None when they are off."""
    return rules_for(cfg).is_excluded if cfg.filter.start and cfg.filter.excludes else None


def target_for(cfg: configmod.Config, remote: configmod.Remote) -> Target:
    r = cfg.rsync
    return Target(
        ip=remote.ip, module=remote.name, port=remote.port,
        user=r.users if r.auth else "", password_file=r.password_file if r.auth else None,
        timeout=r.timeout, ssh=r.ssh, rsh=r.ssh_command, common_params=r.common_params,
        deletes=cfg.inotify.delete,
        full_deletes=cfg.inotify.delete and cfg.inotify.delete_in_full_sync,
        skip_rsync_temp=not cfg.filter.keep_dotfiles,
        full_excludes=cfg.crontab.excludes,
        budget=r.latency_budget,
    )


@dataclass(frozen=True)
class Tuning:
    """Settings beyond confxml.xml, from the environment (SERSYNCPY_*), read at start-up."""

    delete_hold: float = DELETE_HOLD_SECONDS
    unwatched_resync: float = UNWATCHED_RESYNC_SECONDS
    status: float = statusfile.STATUS_SECONDS
    raise_limits: bool = False  # --raise-inotify-limits
    watcher: Optional[str] = None  # SERSYNCPY_WATCHER: in place of <watcher use>

    @classmethod
    def from_environment(cls) -> Tuning:
        return cls(
            delete_hold=env_seconds("SERSYNCPY_DELETE_HOLD_SECONDS", DELETE_HOLD_SECONDS),
            unwatched_resync=env_seconds("SERSYNCPY_UNWATCHED_RESYNC_SECONDS",
                                         UNWATCHED_RESYNC_SECONDS),
            status=env_seconds("SERSYNCPY_STATUS_SECONDS", statusfile.STATUS_SECONDS),
            watcher=env_watcher(),
        )


def env_watcher() -> Optional[str]:
    """SERSYNCPY_WATCHER (auto, inotify, fanotify), None when unset; a bad one is an error."""
    text = os.environ.get("SERSYNCPY_WATCHER", "").strip()
    if not text:
        return None
    if text not in WATCHERS:
        raise UsageError(f"SERSYNCPY_WATCHER={text!r}: expected one of {', '.join(WATCHERS)}")
    return text


def env_seconds(name: str, default: float) -> float:
    """A tuning value from the environment, in seconds; a bad one is a one-line error."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return convert.seconds_or_zero(text)
    except ValueError as exc:
        raise UsageError(f"{name}={text!r}: {exc}") from None
