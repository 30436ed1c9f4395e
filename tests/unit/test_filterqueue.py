"""The filter queue's rules, one test body run against the compiled queue and the Python twin,
plus generated sequences fed to both and compared."""

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# Imported directly, never skipped: a broken build must fail here, not hide behind the twin.
from sersyncpy import _filterqueue as compiled
from sersyncpy import _filterqueue_py, events
from sersyncpy.events import DELETE, FULL, RENAME, SUBTREE, UPDATE, Event

IMPLEMENTATIONS = {"compiled": compiled.FilterQueue, "python": _filterqueue_py.FilterQueue}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def q(request):
    return IMPLEMENTATIONS[request.param]()


def paths(batch):
    return [(e.kind, e.path) for e in batch]


def test_empty_queue_gives_empty_batch(q):
    assert len(q) == 0 and not q
    assert q.take() == []


def test_push_then_take_returns_events_in_order_and_empties(q):
    q.push(UPDATE, "a")
    q.push(UPDATE, "b", False)
    assert len(q) == 2 and q
    assert q.take() == [Event(UPDATE, "a"), Event(UPDATE, "b")]
    assert q.take() == []


def test_repeated_writes_are_one_update_in_order_of_latest_change(q):
    for p in ("x", "y", "x", "x"):
        q.push(UPDATE, p)
    assert paths(q.take()) == [(UPDATE, "y"), (UPDATE, "x")]


def test_create_then_delete_is_a_single_delete(q):
    q.push(UPDATE, "f")
    q.push(DELETE, "f")
    assert paths(q.take()) == [(DELETE, "f")]


def test_delete_then_recreate_file_is_an_update(q):
    q.push(DELETE, "f")
    q.push(UPDATE, "f")
    assert paths(q.take()) == [(UPDATE, "f")]


def test_directory_delete_swallows_earlier_events_below_it(q):
    q.push(UPDATE, "d/a")
    q.push(UPDATE, "d/sub/b")
    q.push(UPDATE, "dx/c")  # a sibling whose name starts alike is not below d
    q.push(DELETE, "d/sub/b")
    q.push(DELETE, "d/sub", True)
    q.push(DELETE, "d", True)
    assert paths(q.take()) == [(UPDATE, "dx/c"), (DELETE, "d")]


def test_directory_recreated_while_pending_becomes_subtree_covering_later_events(q):
    q.push(UPDATE, "d/old")
    q.push(DELETE, "d", True)
    q.push(UPDATE, "d", True)
    q.push(UPDATE, "d/new")
    assert paths(q.take()) == [(SUBTREE, "d")]


def test_subtree_covers_events_below_it_before_and_after(q):
    q.push(UPDATE, "n/early")
    q.push(SUBTREE, "n", True)
    q.push(UPDATE, "n/late")
    q.push(UPDATE, "n/deep/er/file")
    q.push(UPDATE, "other")
    assert paths(q.take()) == [(SUBTREE, "n"), (UPDATE, "other")]


def test_update_of_a_pending_subtree_keeps_the_subtree(q):
    q.push(SUBTREE, "n", True)
    q.push(UPDATE, "n", True)
    assert paths(q.take()) == [(SUBTREE, "n")]


def test_file_rename_is_delete_of_old_and_update_of_new(q):
    q.push(RENAME, "b", False, "a")
    assert q.take() == [Event(DELETE, "a"), Event(UPDATE, "b")]


def test_directory_rename_keeps_its_source_and_deletes_the_old_path(q):
    q.push(RENAME, "b", True, "a")
    assert q.take() == [Event(DELETE, "a", True), Event(RENAME, "b", True, "a")]


def test_rename_chains_collapse(q):
    q.push(RENAME, "b", True, "a")
    q.push(RENAME, "c", True, "b")
    batch = q.take()
    assert Event(RENAME, "c", True, "a") in batch
    assert [e for e in batch if e.kind == RENAME] == [Event(RENAME, "c", True, "a")]
    assert {e.path for e in batch if e.kind == DELETE} == {"a", "b"}


def test_deleting_a_renamed_directory_leaves_deletes(q):
    q.push(RENAME, "b", True, "a")
    q.push(DELETE, "b", True)
    assert paths(q.take()) == [(DELETE, "a"), (DELETE, "b")]


def test_directory_rename_into_a_pending_subtree_stays_a_rename(q):
    # pushed first, so the subtree's push finds the data on the remote instead of resending it
    q.push(SUBTREE, "n", True)
    q.push(RENAME, "n/x", True, "x")
    q.push(UPDATE, "n/x/inside")
    assert paths(q.take()) == [(SUBTREE, "n"), (DELETE, "x"), (RENAME, "n/x")]


def test_full_root_covers_everything(q):
    q.push(UPDATE, "a")
    q.push(FULL, "", True)
    q.push(UPDATE, "b/c")
    assert paths(q.take()) == [(FULL, "")]


def test_requeue_puts_a_failed_batch_before_newer_changes(q):
    q.push(UPDATE, "a")
    q.push(SUBTREE, "d", True)
    failed = q.take()
    q.push(UPDATE, "b")
    q.push(UPDATE, "a")  # newer than the failed update of a: keeps its place
    q.requeue(failed)
    assert paths(q.take()) == [(SUBTREE, "d"), (UPDATE, "b"), (UPDATE, "a")]


def test_requeued_subtree_is_not_lost_under_a_newer_update(q):
    q.push(SUBTREE, "d", True)
    failed = q.take()
    q.push(UPDATE, "d", True)  # e.g. a chmod of d while the push failed
    q.requeue(failed)
    assert paths(q.take()) == [(SUBTREE, "d")]


def test_requeued_entry_below_a_newer_directory_delete_is_dropped(q):
    q.push(UPDATE, "d/a")
    failed = q.take()
    q.push(DELETE, "d", True)
    q.requeue(failed)
    assert paths(q.take()) == [(DELETE, "d")]


# `mkdir -p t/.ssh; echo k > t/.ssh/id_rsa; mv t t.old; ln -s /root t` (issue 12): t's
# deletion must go on covering the write below it whatever t becomes, or the write comes back
# and rsync follows the symlink t to send /root/.ssh/id_rsa.
_DELETIONS = {"rm": [Event(DELETE, "t", True)], "mv": [Event(RENAME, "t.old", True, "t")]}
_REPLACEMENTS = {
    "symlink": [Event(UPDATE, "t")],
    "file-moved-onto": [Event(RENAME, "t", False, "x")],
    "directory-moved-onto": [Event(RENAME, "t", True, "x")],
    "mkdir": [Event(SUBTREE, "t", True)],
    "chmod-of-a-new-directory": [Event(UPDATE, "t", True)],
    "symlink-removed": [Event(UPDATE, "t"), Event(DELETE, "t")],
    "symlink-then-directory": [Event(UPDATE, "t"), Event(DELETE, "t"), Event(UPDATE, "t", True)],
    "deleted-again": [Event(UPDATE, "t"), Event(DELETE, "t"), Event(DELETE, "t", True)],
}


@pytest.mark.parametrize("failed", [False, True], ids=["pending", "requeued"])
@pytest.mark.parametrize("replacement", sorted(_REPLACEMENTS))
@pytest.mark.parametrize("deletion", sorted(_DELETIONS))
def test_a_directory_deletion_covers_older_changes_below_whatever_replaces_it(
        q, deletion, replacement, failed):
    q.push(UPDATE, "t/.ssh/id_rsa")
    q.push(UPDATE, "t/.ssh", True)
    if failed:  # the write's batch failed; it is put back after t changed
        batch = q.take()
    q.push_many(_DELETIONS[deletion] + _REPLACEMENTS[replacement])
    if failed:
        q.requeue(batch)
    taken = q.take()
    assert [e for e in taken if e.path.startswith("t/")] == []
    assert taken[-1].path == "t"  # what t is now is still sent


def test_a_change_below_a_replaced_directory_after_its_deletion_is_kept(q):
    q.push(UPDATE, "t/old")
    q.push(DELETE, "t", True)
    q.push(UPDATE, "t")  # a symlink, then a directory again
    q.push(DELETE, "t")
    q.push(UPDATE, "t", True)
    q.push(UPDATE, "t/new")
    assert paths(q.take()) == [(UPDATE, "t"), (UPDATE, "t/new")]


def test_rename_chain_sources_cover_older_changes_below_them_when_replaced(q):
    q.push(UPDATE, "a/x")
    q.push(RENAME, "b", True, "a")
    q.push(RENAME, "c", True, "b")
    q.push(UPDATE, "a")  # symlinks where the directories were
    q.push(UPDATE, "b")
    assert paths(q.take()) == [(RENAME, "c"), (UPDATE, "a"), (UPDATE, "b")]


def test_a_directory_moved_out_of_a_covering_one_covers_the_rename_below_it(q):
    # n/x's deletion is covered by n's SUBTREE, which does not drop the RENAME below n/x: the
    # deletion must still drop it, or n/x/r is sent through whatever n/x is now.
    q.push(SUBTREE, "n", True)
    q.push(RENAME, "n/x/r", True, "q")
    q.push(RENAME, "m", True, "n/x")
    q.push(UPDATE, "n/x")  # covered by n
    assert paths(q.take()) == [(SUBTREE, "n"), (DELETE, "q"), (RENAME, "m")]


def test_peek_shows_the_batch_and_keeps_it(q):
    q.push(UPDATE, "d/a")
    q.push(DELETE, "d", True)
    q.push(UPDATE, "f")
    assert q.peek() == [Event(DELETE, "d", True), Event(UPDATE, "f")]
    assert q.take() == [Event(DELETE, "d", True), Event(UPDATE, "f")]
    assert q.peek() == []


def test_paths_with_any_characters(q):
    names = ["sp ace", "new\nline", "-e sh", "$(touch x)", "bad\udcff", "Ωμέγα/日本/🙂"]
    for n in names:
        q.push(UPDATE, n)
    assert [e.path for e in q.take()] == names


def test_rename_without_source_is_refused(q):
    with pytest.raises(ValueError):
        q.push(RENAME, "b", True, None)


def test_push_many_is_push_of_each_in_order(q):
    reads = [Event(UPDATE, "d/a"), Event(SUBTREE, "n", True), Event(UPDATE, "n/x"),
             Event(RENAME, "m", True, "d"), Event(DELETE, "f"), Event(UPDATE, "d/a")]
    for n in range(1, len(reads)):  # every prefix: no event skipped (a later one may cover it)
        one, many = type(q)(), type(q)()
        for e in reads[:n]:
            one.push(e.kind, e.path, e.is_dir, e.src)
        many.push_many(reads[:n])
        assert many.peek() == one.peek()
    one = type(q)()
    for e in reads:
        one.push(e.kind, e.path, e.is_dir, e.src)
    q.push_many(reads)
    assert q.take() == one.take()


def test_push_many_takes_plain_tuples_and_iterators(q):
    q.push_many([(UPDATE, "a", False, None)])
    q.push_many(iter([Event(UPDATE, "b"), (DELETE, "d", True, None)]))
    q.push_many([])
    assert q.take() == [Event(UPDATE, "a"), Event(UPDATE, "b"), Event(DELETE, "d", True)]


def test_push_many_keeps_what_came_before_a_rename_without_source(q):
    with pytest.raises(ValueError):
        q.push_many([Event(UPDATE, "a"), Event(RENAME, "b", True, None), Event(UPDATE, "c")])
    assert q.take() == [Event(UPDATE, "a")]


def test_kind_numbers_agree_with_the_compiled_queue():
    # The .pyx hard-codes the kinds; a change in events.py must be made there too.
    q = compiled.FilterQueue()
    for kind in (events.UPDATE, events.DELETE, events.SUBTREE, events.FULL):
        q.push(kind, f"p{kind}", True)
    q.push(events.RENAME, "r", True, "s")
    kinds = {e.path: e.kind for e in q.take()}
    assert kinds == {"p1": 1, "p2": 2, "p3": 3, "p5": 5, "s": 2, "r": 4}
    assert compiled.IMPLEMENTATION == "compiled"


# -- both implementations, same generated sequences -------------------------------------------

_names = st.sampled_from(["a", "b", "c", "a/x", "a/y", "b/x", "a/x/z", "c/d/e", "ab", "",
                         "Ω", "Ω/日本", "Ω/日本/🙂"])
_ops = st.one_of(
    st.tuples(st.sampled_from([UPDATE, DELETE, SUBTREE, FULL]), _names, st.booleans(),
              st.none()),
    st.tuples(st.just(RENAME), _names, st.booleans(), _names),
    st.just("take"),
    st.just("requeue"),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_ops, max_size=60))
def test_compiled_and_python_queues_give_the_same_batches(ops):
    # Each implementation twice: fed by push() one event at a time, and by push_many() with
    # the events between two takes as one read.
    queues = [compiled.FilterQueue(), _filterqueue_py.FilterQueue(),
              compiled.FilterQueue(), _filterqueue_py.FilterQueue()]
    one_by_one, many = queues[:2], queues[2:]
    last = [[] for _ in queues]
    read = []

    def flush():
        for q in many:
            q.push_many(read)
        read.clear()

    for op in ops:
        if op == "take":
            flush()
            assert all(q.peek() == queues[0].peek() for q in queues)
            last = [q.take() for q in queues]
            assert all(batch == last[0] for batch in last)
        elif op == "requeue":
            flush()
            for q, batch in zip(queues, last):
                q.requeue(batch)
            last = [[] for _ in queues]
        else:
            kind, path, is_dir, src = op
            if kind == RENAME and src == path:
                continue
            for q in one_by_one:
                q.push(kind, path, is_dir, src)
            read.append(Event(kind, path, is_dir, src))
        assert len(one_by_one[0]) == len(one_by_one[1])
    flush()
    assert len({len(q) for q in queues}) == 1
    batches = [q.take() for q in queues]
    assert all(batch == batches[0] for batch in batches)


# -- each implementation against a reference model of the deletion rule -----------------------

def _ancestors(path):
    """The directories above `path`, the root "" last; none above the root."""
    while path:
        cut = path.rfind("/")
        path = path[:cut] if cut > 0 else ""
        yield path


class _Reference:
    """When each path last changed and each directory was last deleted (a directory rename's
    source included), on one clock that takes and requeues do not reset."""

    def __init__(self):
        self.clock = 0
        self.changed = {}  # path -> time of its latest change
        self.deleted = {}  # directory -> time of its latest directory deletion
        self.pending = set()  # paths pushed or requeued since the last take
        self.touched = set()  # those and the paths they were renamed from

    def push(self, kind, path, is_dir, src):
        if kind == RENAME:
            self._change(src, deleted=is_dir)  # the source goes first, as in the queue
        self._change(path, deleted=kind == DELETE and is_dir)

    def _change(self, path, deleted):
        self.clock += 1
        self.changed[path] = self.clock
        if deleted:
            self.deleted[path] = self.clock
        self.pending.add(path)
        self.touched.add(path)

    def requeue(self, batch):
        for e in batch:
            self.pending.add(e.path)
            self.touched.update(p for p in (e.path, e.src) if p is not None)

    def check(self, batch):
        """No event of `batch` lies below a directory deleted after the event's latest change;
        and nothing is lost for nothing: a path pending with no ancestor touched since the
        last take is in the batch."""
        for e in batch:
            for d in _ancestors(e.path):
                assert self.deleted.get(d, 0) <= self.changed[e.path], (
                    f"{e} is older than the deletion of directory {d!r}")
        alone = {p for p in self.pending if self.touched.isdisjoint(_ancestors(p))}
        assert alone <= {e.path for e in batch}
        self.pending.clear()
        self.touched.clear()


_tree = st.sampled_from(["", "t", "t/s", "t/s/k", "t/u", "tt", "u", "u/t"])
_tree_push = st.one_of(
    st.tuples(st.sampled_from([UPDATE, DELETE, SUBTREE, FULL]), _tree, st.booleans(),
              st.none()),
    st.tuples(st.just(DELETE), _tree, st.just(True), st.none()),  # more directory deletions
    st.tuples(st.just(RENAME), _tree, st.booleans(), _tree),
)
# Rounds as a lane lives them: changes, a take, changes while the batch is pushed, and then the
# batch delivered, failed (requeued) or partly held (its held events requeued, then its failed
# ones as older still). Rounds find the requeue cases far sooner than free sequences do.
_rounds = st.lists(st.tuples(st.lists(_tree_push, max_size=6), st.lists(_tree_push, max_size=6),
                             st.sampled_from(["delivered", "failed", "held"])), max_size=8)


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
@settings(max_examples=600, deadline=None)
@given(rounds=_rounds)
def test_no_taken_event_lies_below_a_directory_deleted_after_it(implementation, rounds):
    q = IMPLEMENTATIONS[implementation]()
    ref = _Reference()

    def push(ops):
        for op in ops:
            if op[0] != RENAME or op[1] != op[3]:
                q.push(*op)
                ref.push(*op)

    for before, during, fate in rounds:
        push(before)
        batch = q.take()
        ref.check(batch)
        push(during)
        parts = {"delivered": [], "failed": [batch], "held": [batch[1::2], batch[::2]]}[fate]
        for part in parts:
            q.requeue(part)
            ref.requeue(part)
    ref.check(q.take())


def test_selector_honours_the_environment_override():
    code = "from sersyncpy import filterqueue as f; print(f.IMPLEMENTATION)"
    env = dict(os.environ, SERSYNCPY_NO_EXTENSIONS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "python"
    env.pop("SERSYNCPY_NO_EXTENSIONS")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "compiled"
