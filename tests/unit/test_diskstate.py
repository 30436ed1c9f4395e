"""What a path is on disk as a push sees it: never through a symlinked or replaced ancestor;
and what cannot be read, named once. (Unreadable for a real second uid, which needs root:
tests/integration/test_security.py.)"""

import pytest

from sersyncpy.diskstate import UNREADABLE_NAMED, State, Unreadable, disk_state


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "sub" / "f").write_text("x")
    (root / "file").write_text("x")
    secret = tmp_path / "secret"
    (secret / ".ssh").mkdir(parents=True)
    (secret / ".ssh" / "id_rsa").write_text("key")
    (root / "t").symlink_to(secret)  # a directory replaced by a symlink out of the tree
    return root


@pytest.mark.parametrize("rel, expected", [
    ("", State.DIR), ("d", State.DIR), ("d/sub", State.DIR), ("d/sub/f", State.OTHER),
    ("file", State.OTHER), ("t", State.OTHER), ("nope", State.MISSING),
    ("nope/deeper/f", State.MISSING),
    ("t/.ssh/id_rsa", State.SHADOWED),  # never followed out of the tree
    ("t/.ssh", State.SHADOWED),
    ("file/below", State.SHADOWED),
    ("d/sub/f/below/more", State.SHADOWED),
])
def test_disk_state(tree, rel, expected):
    assert disk_state(str(tree), rel) is expected
    assert disk_state(str(tree), rel, {}) is expected


def test_the_cache_checks_each_directory_of_a_batch_once(tree):
    cache: dict = {}
    assert disk_state(str(tree), "d/sub/f", cache) is State.OTHER
    assert cache == {"d": State.DIR, "d/sub": State.DIR}
    assert disk_state(str(tree), "t/.ssh/id_rsa", cache) is State.SHADOWED
    assert cache["t"] is State.SHADOWED and cache["t/.ssh"] is State.SHADOWED


def test_an_unreadable_path_is_named_once_whatever_the_remotes(caplog):
    unreadable = Unreadable("/srv/www")
    unreadable.report(["a", "b"])
    unreadable.report(["a", "b"])  # a second remote, or a retry
    assert unreadable.count() == 2
    # Log text kept: the line naming each path, once, is the product (count() counts them).
    assert [r.getMessage() for r in caplog.records] == [
        "cannot read /srv/www/a (permission denied): it is not replicated until it can be "
        "read", "cannot read /srv/www/b (permission denied): it is not replicated until it "
        "can be read"]
    unreadable.readable(["a"])
    assert unreadable.count() == 1


def test_thousands_of_unreadable_paths_are_counted_not_each_named(caplog):
    unreadable = Unreadable("/srv/www")
    for index in range(5000):  # another user's mkdir -m 700, one at a time
        unreadable.report([f"d{index}"])
    assert unreadable.count() == 5000
    assert len(caplog.records) == UNREADABLE_NAMED + 1  # kept: how much is logged


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_shared_states_look_a_path_up_once_until_an_event_or_age(tmp_path, monkeypatch):
    from sersyncpy import diskstate

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    calls = []
    real = diskstate.disk_state
    monkeypatch.setattr(diskstate, "disk_state",
                        lambda root, rel, cache=None: calls.append(rel) or real(root, rel, cache))
    clock = Clock()
    states = diskstate.SharedStates(str(tmp_path), clock)
    assert states.state("d/f", {}) is State.OTHER
    assert states.state("d/f", {}) is State.OTHER  # a second lane: no lookup
    assert calls == ["d/f"]
    (tmp_path / "d" / "f").unlink()
    states.forget(["d/f"])  # the deletion's event
    assert states.state("d/f", {}) is State.MISSING
    (tmp_path / "d" / "f").write_text("x")
    states.forget(["d"])  # an event on a directory above it
    assert states.state("d/f", {}) is State.OTHER
    states.forget([""])  # the root's (an overflow's full sync)
    assert states.state("d/f", {}) is State.OTHER
    assert calls == ["d/f"] * 4
    states.forget(["d/other", "e"])  # events elsewhere change nothing
    states.state("d/f", {})
    assert len(calls) == 4
    clock.now += diskstate.SharedStates.TTL_SECONDS * 1.5
    states.state("d/f", {})  # aged out
    assert len(calls) == 5
