"""The package as a user gets it: an sdist built from a clean copy of the tree (`python -m
build --sdist`), a wheel built from that sdist (`pip wheel --no-deps`, so the sdist must hold
all it needs: the .pyx sources, the man pages) and alike to the wheel `pip wheel --no-deps .`
builds from the tree, installed into a fresh virtualenv holding
nothing else (its dependencies from the package index), and run from a directory outside the
repository: the compiled filter queue loads, `--version`, one live replication (`sersyncpy
demo`), and `man` finds the installed pages. A broken MANIFEST.in, package data or build
dependency fails here. About 40 s, most of it the three isolated builds."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import sersyncpy

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parents[2]
VERSION = sersyncpy.__version__
NAME = f"sersyncpy-{VERSION}"
MAN = shutil.which("man")


def run(argv: list, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def clean_copy(dest: Path) -> Path:
    """The files a clean clone would have (tracked, plus new ones not ignored), without the
    build products, egg-info and venv of this working tree."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], capture_output=True, timeout=60)
    if listed.returncode != 0:
        pytest.fail(f"git ls-files: {listed.stderr.decode(errors='replace')}")
    for name in sorted(set(listed.stdout.decode().split("\0")) - {""}):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is skipped
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def clean_environment(extra_path: Path) -> dict[str, str]:
    """No virtualenv, no PYTHONPATH, no SERSYNCPY_* settings of the test run; PATH without
    the repository's venv."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("SERSYNCPY_") and key not in (
               "PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "MANPATH", "PYTHONSAFEPATH")}
    ours = str(REPO / ".venv" / "bin")
    path = [p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p and p != ours]
    env["PATH"] = os.pathsep.join([str(extra_path), *path])
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """{"sdist": ..., "wheel": ..., "wheel_from_tree": ...}, built as described above."""
    top = tmp_path_factory.mktemp("packaging")
    source = clean_copy(top / "source")
    out = top / "dist"
    run([sys.executable, "-m", "build", "--sdist", "--outdir", out, source])
    sdist = out / f"{NAME}.tar.gz"
    assert sdist.is_file(), sorted(os.listdir(out))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
         "-w", out, sdist])
    wheels = sorted(out.glob(f"sersyncpy-{VERSION}-*.whl"))
    assert len(wheels) == 1, sorted(os.listdir(out))
    # The same from the tree, as `pip wheel --no-deps .` in a clone: it must hold the same.
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
         "-w", top / "from-tree", source])
    from_tree = sorted((top / "from-tree").glob(f"sersyncpy-{VERSION}-*.whl"))
    assert len(from_tree) == 1, sorted(os.listdir(top / "from-tree"))
    return {"sdist": sdist, "wheel": wheels[0], "wheel_from_tree": from_tree[0]}


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory) -> Path:
    """A fresh virtualenv with the wheel (and its dependencies) installed, nothing else."""
    home = tmp_path_factory.mktemp("wheelvenv") / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    run([base, "-m", "venv", home])
    run([home / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
         dist["wheel"]], env=clean_environment(home / "bin"))
    return home


def test_sdist_holds_the_sources_and_the_man_pages(dist):
    with tarfile.open(dist["sdist"]) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for needed in ("src/_filterqueue.pyx", "src/_fanotify.pyx", "setup.py", "pyproject.toml",
                   "MANIFEST.in", "README.md", "man/sersyncpy.8", "man/sersyncpy-confxml.5",
                   "sersyncpy/_filterqueue.pyi", "sersyncpy/py.typed",
                   "sersyncpy/plugins/__init__.py"):
        assert needed in names


def test_wheel_holds_the_extensions_and_the_man_pages(dist):
    names = set(zipfile.ZipFile(dist["wheel"]).namelist())
    for needed in (f"{NAME}.data/data/share/man/man8/sersyncpy.8",
                   f"{NAME}.data/data/share/man/man5/sersyncpy-confxml.5",
                   "sersyncpy/_filterqueue.pyi", "sersyncpy/py.typed",
                   "sersyncpy/plugins/command.py"):
        assert needed in names
    for extension in ("_filterqueue", "_fanotify"):
        assert any(re.fullmatch(rf"sersyncpy/{extension}\..*\.so", name) for name in names)
    assert not any(name.endswith((".pyx", ".c")) for name in names)
    # What the sdist left out (package data, say) would be in the tree's wheel only.
    assert set(zipfile.ZipFile(dist["wheel_from_tree"]).namelist()) == names


def test_installed_wheel_loads_its_compiled_queue(venv, tmp_path):
    env = clean_environment(venv / "bin")
    where = run([venv / "bin" / "python", "-c",
                 "import sersyncpy, sersyncpy._filterqueue, sersyncpy._fanotify; "
                 "print(sersyncpy.__file__)"], cwd=tmp_path, env=env).stdout.strip()
    assert Path(where).resolve().is_relative_to(venv.resolve())
    version = run([venv / "bin" / "sersyncpy", "--version"], cwd=tmp_path, env=env).stdout
    assert version.startswith(f"sersyncpy {VERSION} filterqueue=compiled watcher=")


def test_installed_wheel_replicates(venv, tmp_path):
    """`sersyncpy demo`: a local rsync daemon, a file written and seen arriving, live."""
    env = clean_environment(venv / "bin")
    done = run([venv / "bin" / "sersyncpy", "demo", "--dir", tmp_path / "demo",
                "--seconds", "1"], cwd=tmp_path, env=env, timeout=60)
    assert "filterqueue=compiled" in done.stdout
    assert "ARRIVED:" in done.stdout, done.stdout + done.stderr
    assert "listings match" in done.stdout
    assert (tmp_path / "demo" / "module" / "hello.txt").read_bytes() == \
        (tmp_path / "demo" / "source" / "hello.txt").read_bytes()


@pytest.mark.skipif(MAN is None, reason="man-db is not installed (scripts/setup --test)")
def test_man_finds_the_installed_pages(venv, tmp_path):
    """`man -M VENV/share/man` renders them; plain `man` finds them once the venv's bin is on
    PATH (man-db's manpath maps each PATH bin directory to the share/man beside it)."""
    env = {**clean_environment(venv / "bin"), "MANPAGER": "cat", "PAGER": "cat",
           "MANWIDTH": "80", "LC_ALL": "C.UTF-8"}
    pages = venv / "share" / "man"
    for section, page in (("8", "sersyncpy"), ("5", "sersyncpy-confxml")):
        shown = run([MAN, "-M", pages, section, page], cwd=tmp_path, env=env).stdout
        assert "sersyncpy" in shown and "SEE ALSO" in shown
        found = run([MAN, "-w", section, page], cwd=tmp_path, env=env).stdout.strip()
        assert Path(found).resolve() == (pages / f"man{section}" / f"{page}.{section}").resolve()
