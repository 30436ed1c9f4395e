"""Hostile file names, created, renamed and deleted live, arrive byte for byte and are never run.

sersync 2.5 built one shell command per event, so a name such as `$(touch MARKER)` ran. Here
every name is a file and a directory; after each phase the replica must equal the source and
no file MARKER may exist anywhere a shell could have run. Names are bytes: some are not UTF-8.
The fail log, a script an admin may run by hand, is held to the same rule.
"""

import os
import shutil
import stat
import subprocess

import pytest
from conftest import assert_trees_equal, wait_until
from unit.test_faillog import HOSTILE

from integration.conftest import confxml, same_tree
from sersyncpy import faillog, rsync
from sersyncpy.events import DELETE, SUBTREE, UPDATE, Event

MARKER = b"MARKER"
NAME_MAX = 255
PATH_MAX = 4096
# Room left under PATH_MAX for rsync's temporary names and the deepest file.
PATH_MARGIN = 100

SHELL = [
    b"`touch MARKER`", b"$(touch MARKER)", b"a;touch MARKER;b", b"x' ; touch MARKER ; '",
    b'x" ; touch MARKER ; "', b"a|touch MARKER", b"a && touch MARKER", b"> MARKER",
    b"a\ntouch MARKER", b"${IFS}touch${IFS}MARKER",
]
NAMES = SHELL + [
    b"with space", b" leading and trailing ", b'double"quote', b"single'quote",
    b"new\nline", b"tab\there", b"cr\rreturn", b"-leading-dash", b"--delete", b"-e sh",
    b"*", b"?", b"[", b"]", b"a*b?c[d]e", b"back\\slash", b"\\", b"host:path", b"a::b",
    b"%s%n%x", b"!bang",
    b"bad\xff\xfe", b"\xc3(", b"\x80only continuation",
    "Кириллица".encode(), "漢字かな交じり".encode(), "emoji 🎉🐍 👩‍💻".encode(),
    b"n" * NAME_MAX, ("ж" * 127 + "x").encode(),
]
RENAME_SUFFIX = b" \n;`touch MARKER`$(touch MARKER)"


def renamed(name: bytes) -> bytes:
    """Another hostile name for `name`, still at most NAME_MAX bytes."""
    return name[:NAME_MAX - len(RENAME_SUFFIX)] + RENAME_SUFFIX


def renamed_dir(name: bytes) -> bytes:
    """renamed(name) without the wildcards that rsync expands in a destination (see
    test_a_directory_renamed_to_a_wildcard_name_is_sent_to_that_name_only)."""
    return renamed(name.translate(bytes.maketrans(b"*?[", b"SQB")))


def write(path: bytes, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def join(*parts: bytes) -> bytes:
    return os.path.join(*parts)


def deep_chain(root: bytes, budget: int) -> tuple[bytes, bytes]:
    """Directories of long hostile components under `root`/deep, with a file at the bottom,
    whose relative path is close to `budget` bytes; returns (deepest dir, file), relative."""
    filler = b"$(touch MARKER) `x` ;\n\xff " * 20
    leaf = b"leaf $(touch MARKER)"
    rel, i = b"deep", 0
    while len(rel) + 1 + 250 + 1 + len(leaf) <= budget:
        rel = join(rel, filler[:247] + b"%03d" % i)
        i += 1
    last = budget - len(rel) - 2 - len(leaf)
    if last > 0:
        rel = join(rel, filler[:last])
    os.makedirs(join(root, rel))
    file = join(rel, leaf)
    write(join(root, file), b"at the bottom")
    return rel, file


def assert_no_marker(*trees) -> None:
    for tree in trees:
        tree = os.fsencode(tree)
        assert not os.path.lexists(join(tree, MARKER)), f"{MARKER!r} in {tree!r}"
        for where, dirs, files in os.walk(tree):
            assert MARKER not in dirs + files, f"a name was executed: {MARKER!r} in {where!r}"


@pytest.mark.parametrize("attrib", [False, True], ids=["default", "attrib"])
def test_hostile_names_are_replicated_exactly_and_never_executed(
    daemon, src, sersyncpy, tmp_path, attrib
):
    dst = daemon.modules["backup"]
    root = os.fsencode(src)
    module = os.fsencode(dst)
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])], attrib=attrib))
    places = (src, dst, daemon.root, tmp_path, proc.home)

    def check() -> None:
        same_tree(src, dst, timeout=20)
        assert_no_marker(*places)
        assert not os.path.lexists(join(os.getcwdb(), MARKER)), "MARKER in the test's cwd"

    # Phase 1: every name as a file in the root, as a directory holding itself, as a symlink.
    os.mkdir(join(root, b"dirs"))
    os.mkdir(join(root, b"links"))
    for i, name in enumerate(NAMES):
        write(join(root, name), b"file %d: " % i + name)
        os.mkdir(join(root, b"dirs", name))
        write(join(root, b"dirs", name, name), name)
        write(join(root, b"dirs", name, b"plain"), b"%d" % i)
        os.symlink(join(b"..", name), join(root, b"links", name))
    budget = PATH_MAX - max(len(module), len(root)) - PATH_MARGIN
    deep_dir, deep_file = deep_chain(root, budget)
    assert len(deep_file) > budget - 10 and len(join(module, deep_file)) < PATH_MAX
    check()

    # Phase 2: rename files and directories in place, each into another hostile name; move a
    # hostile directory into another one; rename a component in the middle of the deep chain.
    for name in NAMES:
        os.rename(join(root, name), join(root, renamed(name)))
        os.rename(join(root, b"dirs", name), join(root, b"dirs", renamed_dir(name)))
    os.rename(join(root, b"dirs", renamed_dir(b"$(touch MARKER)")),
              join(root, b"dirs", renamed_dir(b"--delete"), b"-e sh"))
    parts = deep_dir.split(b"/")
    middle = len(parts) // 2
    new_middle = parts[middle][:-3] + b"new"
    os.rename(join(root, *parts[:middle + 1]), join(root, *parts[:middle], new_middle))
    parts[middle] = new_middle
    deep_dir = join(*parts)
    check()

    # Phase 3 (attrib only, where a chmod alone is pushed): modes of hostile files and dirs.
    if attrib:
        for name in NAMES[::3]:
            os.chmod(join(root, renamed(name)), 0o640)
            os.chmod(join(root, b"dirs", renamed_dir(name)), 0o750)
        os.chmod(join(root, deep_dir), 0o700)
        check()
        assert stat.S_IMODE(os.stat(join(module, deep_dir)).st_mode) == 0o700

    # Phase 4: delete every other file, directory and link, and the bottom of the deep chain.
    shutil.rmtree(join(root, b"dirs", renamed_dir(b"--delete"), b"-e sh"))
    for name in NAMES[::2]:
        os.unlink(join(root, renamed(name)))
        os.unlink(join(root, b"links", name))
        gone = join(root, b"dirs", renamed_dir(name))
        if os.path.lexists(gone):
            shutil.rmtree(gone)
    os.unlink(join(root, deep_dir, os.path.basename(deep_file)))
    shutil.rmtree(join(root, os.path.dirname(deep_dir)))
    check()
    assert proc.proc.poll() is None, proc.log()
    # Log text kept: no rsync failed on any name. No status field counts every failed rsync:
    # a rename that failed and went again as a copy, or a failed start-up resync, is in none.
    assert " failed: " not in proc.log(), proc.log()


def test_top_level_names_starting_with_hash_or_semicolon_are_replicated(daemon, src, sersyncpy):
    dst = daemon.modules["backup"]
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])]))
    root = os.fsencode(src)
    write(join(root, b"#hash"), b"h")
    write(join(root, b";semicolon"), b"s")
    os.mkdir(join(root, b"#dir"))
    write(join(root, b"#dir", b"inside"), b"i")
    write(join(root, b"sentinel"), b"last")  # queued after the others: it arrives after them
    wait_until(lambda: (dst / "sentinel").exists(), timeout=10)
    same_tree(src, dst, timeout=1)
    assert_no_marker(src, dst, proc.home)


def test_a_directory_renamed_to_a_wildcard_name_is_sent_to_that_name_only(daemon, src,
                                                                          sersyncpy):
    dst = daemon.modules["backup"]
    proc = sersyncpy(confxml([(src, [(daemon, "backup")])]))
    for name in ("wild-AA", "plain", "plain2"):
        (src / name).mkdir()
        (src / name / "f").write_bytes(name.encode())
    (src / "wild-AA" / "only-in-AA").write_bytes(b"kept")
    same_tree(src, dst)
    os.rename(src / "plain", src / "wild-*")
    os.rename(src / "plain2", src / "wild-A?")
    (src / "sentinel").write_bytes(b"last")  # queued after the renames: arrives after them
    wait_until(lambda: (dst / "sentinel").exists(), timeout=10)
    same_tree(src, dst, timeout=1)
    assert_no_marker(src, dst, proc.home)


# --------------------------------------------------------------------------- the fail log


def test_running_the_fail_log_by_hand_replicates_hostile_names_and_executes_nothing(
        tmp_path, daemon):
    # The fail log is a script an admin may run (as sersync's was): every name quoted.
    root = tmp_path / "src"
    root.mkdir()
    for name in HOSTILE:
        (root / os.fsencode(name).decode("utf-8", "surrogateescape")).write_bytes(b"x")
    (root / "dir with space").mkdir()
    (root / "dir with space" / "in'side").write_bytes(b"y")
    stale = daemon.modules["backup"] / "deleted `touch MARKER`"
    stale.write_bytes(b"old")
    t = rsync.Target(ip="127.0.0.1", module="backup", port=daemon.port, user=daemon.user,
                     password_file=str(daemon.password_file), common_params=("-a",))
    events = [Event(UPDATE, n) for n in HOSTILE] + [
        Event(SUBTREE, "dir with space", True), Event(DELETE, "deleted `touch MARKER`")]
    script = tmp_path / "fail_log.sh"
    script.write_bytes(faillog.render(faillog.CLEAN, [faillog.LaneState(str(root), t,
                                                                        tuple(events))]))
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    result = subprocess.run(["/bin/sh", str(script)], cwd=workdir, capture_output=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert_trees_equal(root, daemon.modules["backup"])
    for place in (tmp_path, root, workdir, daemon.modules["backup"]):
        assert not (place / "MARKER").exists(), place
