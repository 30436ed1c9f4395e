"""A batch planned against the disk (push.plan): pure, with a fake disk; and disk_state on a
real one."""

from sersyncpy import rsync
from sersyncpy.diskstate import State, disk_state
from sersyncpy.events import DELETE, FULL, RENAME, SUBTREE, UPDATE, Event
from sersyncpy.push import plan

DIR, MISSING, OTHER, SHADOWED = State.DIR, State.MISSING, State.OTHER, State.SHADOWED

DAEMON = rsync.Target(ip="127.0.0.1", module="backup", port=8730, user="sersync",
                      password_file="/etc/rsync.pas", timeout=100, common_params=("-artuz",))
SSH = rsync.Target(ip="198.18.0.2", module="/srv/www", ssh=True)


def DAEMON_RENAMES(src: str, dst: str) -> bool:  # noqa: N802 - a constant-like predicate
    return rsync.renamable(DAEMON, src, dst)


def test_plan_sends_an_unsafe_rename_over_ssh_as_a_whole_directory():
    batch = [Event(RENAME, "d;id>PWNED;", True, "d")]
    p = plan(batch, lambda rel: DIR, lambda s, d: rsync.renamable(SSH, s, d))
    assert not p.renames and [e.path for e in p.listed] == ["d;id>PWNED;"]


def test_plan_sorts_a_batch_by_kind_and_by_disk():
    on_disk = {"renamed": DIR, "meta": DIR, "full": DIR, "sub": DIR, "file": OTHER,
               "was/below/a/file": SHADOWED, "wild*": DIR}
    batch = [
        Event(RENAME, "renamed", True, "old"), Event(RENAME, "gone", True, "old2"),
        Event(RENAME, "wild*", True, "old3"),
        Event(UPDATE, "meta", True), Event(UPDATE, "file"), Event(DELETE, "x"),
        Event(FULL, "full", True), Event(SUBTREE, "sub", True),
        Event(DELETE, "was/below/a/file"),
    ]
    p = plan(batch, lambda rel: on_disk.get(rel, MISSING), DAEMON_RENAMES)
    assert [e.path for e in p.renames] == ["renamed"]
    assert [e.path for e in p.full] == ["full"]
    assert [e.path for e in p.dirs] == ["meta"]
    assert [e.path for e in p.listed] == ["gone", "wild*", "file", "x", "sub"]


def test_disk_state(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    assert [disk_state(str(tmp_path), rel) for rel in ("d", "f", "nope", "f/below", "")] == [
        DIR, OTHER, MISSING, SHADOWED, DIR]


def test_plan_skips_a_missing_path_whose_parent_went_too():
    # rm -rf d: the children's deletions are carried by d's own
    on_disk = {"kept": DIR}
    batch = [Event(DELETE, "d/sub/f"), Event(DELETE, "d/sub", True), Event(DELETE, "d", True),
             Event(UPDATE, "kept/gone-file"), Event(DELETE, "top-file")]
    p = plan(batch, lambda rel: on_disk.get(rel, MISSING), DAEMON_RENAMES)
    assert [e.path for e in p.listed] == ["d", "kept/gone-file", "top-file"]
    assert p.missing == p.listed


def test_plan_marks_the_root_gone():
    p = plan([Event(DELETE, "", True), Event(UPDATE, "x")], lambda rel: OTHER, DAEMON_RENAMES)
    assert p.root_gone and [e.path for e in p.listed] == ["x"]
