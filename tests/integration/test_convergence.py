"""After any start, clean or not, with no -r, the replicas converge to the source: what changed
while sersyncpy was stopped, and while it set its watches, arrives; the resync that does it
runs beside the live pushes, never in front of them (issue 13, item 7)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from conftest import wait_until

from integration.conftest import confxml, same_tree, write


def status(proc) -> dict:
    try:
        return json.loads(proc.fail_log.with_suffix(".status.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def test_what_changed_while_stopped_arrives_after_a_clean_start_without_r(
        daemon, src, sersyncpy):
    module = daemon.modules["backup"]
    write(src / "kept.txt", b"kept")
    write(src / "edited.txt", b"before")
    write(src / "gone.txt", b"to be deleted")
    write(src / "dir/old/f", b"f")
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])]))
    same_tree(src, module)
    assert proc.terminate() == 0  # a clean stop: nothing pending, the fail log says so

    write(src / "edited.txt", b"after, and longer")
    (src / "gone.txt").unlink()
    write(src / "new/deep/file.txt", b"new")
    (src / "dir/old").rename(src / "dir/renamed")
    os.symlink("kept.txt", src / "link")

    proc.start()  # the same config and fail log, no -r
    same_tree(src, module)
    wait_until(lambda: all(r["last_full_sync"] for r in status(proc).get("remotes", [])),
               message="the start-up resync is not in the status")


def _deep_tree(root: Path, width: int, depth: int) -> list[Path]:
    """width ** depth leaf directories; returns them."""
    level = [root]
    for _ in range(depth):
        level = [parent / f"d{i}" for parent in level for i in range(width)]
    for leaf in level:
        leaf.mkdir(parents=True)
    return level


def test_what_is_written_while_the_watches_are_set_arrives(daemon, src, sersyncpy):
    leaves = _deep_tree(src, 10, 4)  # 11,111 directories: set-up takes a while
    module = daemon.modules["backup"]
    written: list[Path] = []
    stop = threading.Event()

    def writer() -> None:
        index = 0
        while not stop.is_set():  # deep files, spread over the tree, while it starts
            written.append(write(leaves[(index * 7919) % len(leaves)] / f"w{index}", b"w"))
            index += 1
            time.sleep(0.002)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        proc = sersyncpy(confxml([(src, [(daemon, "backup")])]))
    finally:
        stop.set()
        thread.join()
    assert len(written) > 10, "the writer did not run during the start"
    same_tree(src, module, timeout=60)
    assert proc.proc.poll() is None


def test_the_start_up_resync_does_not_hold_up_live_changes(daemon, src, sersyncpy):
    # 8 MiB that the remote lacks, sent at 1 MiB/s: the resync takes some 8 s.
    write(src / "big.bin", os.urandom(8 << 20))
    module = daemon.modules["backup"]
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])], params="-a --bwlimit=1024"))
    written = time.monotonic()
    write(src / "live.txt", b"written just after the start")
    wait_until(lambda: (module / "live.txt").exists(), timeout=10)
    arrived = time.monotonic() - written
    assert not (module / "big.bin").exists(), "the resync ended first: nothing was proved"
    assert arrived < 3, f"a live change waited {arrived:.1f} s behind the resync"
    same_tree(src, module, timeout=60)
    wait_until(lambda: [(bool(r["last_full_sync"]), r["pending"])
                        for r in status(proc).get("remotes", [])] == [(True, 0)],
               message="the status does not show the resync done")


def test_a_same_size_rewrite_just_before_its_directory_is_renamed_is_not_linked_over(
    daemon, src, sersyncpy
):
    # The rewrite's pending update goes with the old name when the directory is renamed,
    # and a big directory is sent against its old copy (--link-dest): in whole seconds the
    # rewritten file looks unchanged and the old bytes were linked, for good.
    sersyncpy(confxml([(src, [(daemon, "backup")])]))
    replica = daemon.modules["backup"]
    (src / "a" / "sub").mkdir(parents=True)
    for k in range(100):  # more than a small tree: the rename goes with --link-dest
        write(src / "a" / f"pad{k}", b"x" * 100)
    same_tree(src, replica)
    current = "a"
    for attempt in range(3):
        time.sleep(1.02 - time.time() % 1)  # early in a second, the file is written,
        path = Path(current, "sub", "f")
        write(src / path, os.urandom(1000))
        wait_until(lambda p=path: _same_bytes(src / p, replica / p),  # replicated,
                   timeout=10, interval=0.002)
        write(src / path, os.urandom(1000))  # rewritten, the same size
        renamed = f"b{attempt}"
        os.rename(src / current, src / renamed)
        current = renamed
        same_tree(src, replica, timeout=10)


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        return a.read_bytes() == b.read_bytes()
    except FileNotFoundError:
        return False
