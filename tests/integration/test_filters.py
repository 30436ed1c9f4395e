"""<filter> and <crontabfilter> mean what they meant to sersync 2.5 (issue 13, item 2): live
replication applies exactly the <filter> regexes, to every path it pushes, each file inside a
directory that arrives whole included; the <crontabfilter> patterns apply to full syncs only."""

from __future__ import annotations

import json
import os
import signal
import time

from conftest import wait_until

from integration.conftest import confxml, same_tree, write

REGEXES = (r"(.*)\.gz", r"(.*)\.svn")  # sersync's sample
PATTERNS = ("*.php",)  # sersync's sample crontabfilter, started


def config(src, daemon) -> str:
    return confxml([(src, [(daemon, "backup")])], excludes=REGEXES, crontab_excludes=PATTERNS)


def gz_and_svn(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, dirs, files in os.walk(root) for f in files + dirs
                  if f.endswith((".gz", ".svn")))


def test_live_pushes_apply_the_regexes_and_never_the_crontabfilter(daemon, src, sersyncpy,
                                                                   tmp_path):
    module = daemon.modules["backup"]
    sersyncpy(config(src, daemon))
    write(src / "a.php", b"php: sersync replicated it live; sersyncpy 0.1 never did")
    write(src / "b.gz", b"excluded")
    write(src / "deep/c.php", b"php")
    write(src / "deep/d.gz", b"excluded")
    # A directory that arrives whole: moved in, with a tree inside.
    staging = tmp_path / "staging"
    write(staging / "app/index.php", b"<?php")
    write(staging / "app/assets/x.gz", b"excluded")
    write(staging / "app/assets/y.css", b"css")
    write(staging / "app/.svn/entries", b"excluded with its directory")
    (staging / "app").rename(src / "app")
    # A directory created and filled at once: much of it found by the scan of the new
    # directory, not as events.
    os.makedirs(src / "new/inner")
    write(src / "new/inner/e.php", b"php")
    write(src / "new/inner/f.gz", b"excluded")
    ignore = gz_and_svn(src)
    assert len(ignore) == 5, ignore
    same_tree(src, module, ignore=ignore)
    write(src / "later.txt", b"pushed after all of the above")
    wait_until(lambda: (module / "later.txt").exists(), timeout=10)
    assert gz_and_svn(module) == []


def test_full_syncs_apply_the_crontabfilter_patterns_and_the_regexes(daemon, src, sersyncpy):
    module = daemon.modules["backup"]
    proc = sersyncpy(config(src, daemon))
    write(src / "a.php", b"php")
    write(src / "b.txt", b"txt")
    write(src / "c.gz", b"excluded")
    same_tree(src, module, ignore=["c.gz"])
    for name in ("a.php", "b.txt"):  # lost on the remote, say by hand
        (module / name).unlink()
    asked = time.time()
    proc.proc.send_signal(signal.SIGUSR2)  # a full sync now, as <crontab> would run it

    def full_synced() -> bool:
        doc = json.loads(proc.fail_log.with_suffix(".status.json").read_text())
        return all((r["last_full_sync"] or 0) > asked for r in doc["remotes"])

    wait_until(full_synced, timeout=15, message="no full sync after SIGUSR2")
    assert (module / "b.txt").exists()  # the full sync repairs what it may
    assert not (module / "a.php").exists()  # *.php: <crontabfilter>, full syncs only
    assert not (module / "c.gz").exists()  # the <filter> regexes apply everywhere
