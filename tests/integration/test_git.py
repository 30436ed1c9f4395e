"""Real activity in a watched tree (issue 13): a git repository with a few hundred files,
renames, deletions, dotfiles, a symlink and a directory that becomes a file, checked out back
and forth in the watched tree, .git included. After each checkout the replica equals the
source."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from integration.conftest import confxml, same_tree, write

GIT = shutil.which("git")
pytestmark = pytest.mark.skipif(GIT is None, reason="git is not installed (scripts/setup)")


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run([GIT, "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                           "-c", "init.defaultBranch=main", "-c", "core.autocrlf=false",
                           *args], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def history(repo: Path) -> list[str]:
    """Five commits of a project; returns their ids, oldest first."""
    rng = random.Random(13)
    git(repo, "init", "-q")
    for d in range(20):
        for f in range(15):
            write(repo / f"src/mod{d}/file{f}.c", b"/* %d %d */\n" % (d, f) * rng.randint(1, 40))
    write(repo / ".gitignore", b"*.o\nbuild/\n")
    write(repo / ".editorconfig", b"root = true\n")
    write(repo / "public/.htaccess", b"Deny from all\n")
    write(repo / "public/.well-known/security.txt", b"Contact: x\n")
    ids = [commit(repo, "one")]

    (repo / "src/mod3").rename(repo / "src/renamed3")  # a directory renamed
    for d in range(5, 10):
        for f in range(0, 15, 2):
            write(repo / f"src/mod{d}/file{f}.c", b"changed %d %d\n" % (d, f))
    for f in range(10):
        os.unlink(repo / f"src/mod12/file{f}.c")
    write(repo / ".gitignore", b"*.o\nbuild/\n*.tmp\n")
    ids.append(commit(repo, "two"))

    os.symlink("renamed3/file1.c", repo / "src/link.c")
    write(repo / "docs/a b/ü name.md", b"unicode and spaces\n")
    shutil.rmtree(repo / "src/mod15")
    ids.append(commit(repo, "three"))

    shutil.rmtree(repo / "src/mod16")
    write(repo / "src/mod16", b"a file where a directory was\n")  # a type change
    os.chmod(repo / "src/mod17/file1.c", 0o755)
    ids.append(commit(repo, "four"))

    os.unlink(repo / "src/mod16")
    write(repo / "src/mod16/back.c", b"a directory again\n")
    (repo / "public").rename(repo / "www")
    ids.append(commit(repo, "five"))
    return ids


def test_git_checkouts_back_and_forth_leave_a_replica_equal_to_the_source(
        daemon, src, sersyncpy):
    ids = history(src)  # built in the watched tree, before sersyncpy starts
    module = daemon.modules["backup"]
    sersyncpy(confxml([(src, [(daemon, "backup")])]))
    same_tree(src, module, timeout=60)  # the start-up resync
    for target in (ids[0], ids[3], ids[1], ids[4], ids[2], ids[0], "main"):
        git(src, "checkout", "-q", target)
        same_tree(src, module, timeout=60)
    assert (module / ".gitignore").read_bytes() == (src / ".gitignore").read_bytes()
    assert (module / "www/.htaccess").exists()
