# cython: language_level=3
"""The compiled filter queue: the same rules as sersyncpy/_filterqueue_py.py, typed for speed.

That module is the specification and documents the rules; keep the two line for line alike.
The tests feed both the same sequences and compare the batches.
"""

from sersyncpy.events import Event

# The kinds of sersyncpy/events.py; the tests check that the numbers agree.
cdef enum:
    UPDATE = 1
    DELETE = 2
    SUBTREE = 3
    RENAME = 4
    FULL = 5

# The fields of an entry, a list [kind, is_dir, src, seq] as in the twin.
cdef enum:
    _KIND = 0
    _IS_DIR = 1
    _SRC = 2
    _SEQ = 3

IMPLEMENTATION = "compiled"


cdef inline bint _is_covering(int kind):
    return kind == SUBTREE or kind == RENAME or kind == FULL


cdef inline str _parent(str path):
    cdef Py_ssize_t cut = path.rfind("/")
    return path[:cut] if cut > 0 else ""


cdef class FilterQueue:
    """Pending changes of one watch root for one remote, collapsed; not thread-safe."""

    cdef dict _entries
    cdef set _covering
    cdef set _deleted_dirs
    cdef long long _seq
    cdef bint _requeued
    cdef public long long pushed

    def __init__(self):
        self._entries = {}
        self._covering = set()
        self._deleted_dirs = set()
        self._seq = 0
        self._requeued = False
        self.pushed = 0

    def __len__(self):
        return len(self._entries)

    def __bool__(self):
        return bool(self._entries)

    def push(self, int kind, str path, bint is_dir=False, str src=None):
        """Record one change; `src` is the old path of a RENAME."""
        cdef list prev
        cdef str origin
        self.pushed += 1
        if kind != RENAME:
            self._apply(kind, path, is_dir)
        elif src is None:
            raise ValueError("a RENAME needs its source path")
        elif not is_dir:
            self._apply(DELETE, src, False)
            self._apply(UPDATE, path, False)
        else:
            prev = self._entries.get(src)
            origin = prev[_SRC] if prev is not None and prev[_KIND] == RENAME else src
            self._apply(DELETE, src, True)
            self._seq += 1
            self._set(path, RENAME, True, origin, self._seq)

    cdef void _apply(self, int kind, str path, bint is_dir):
        cdef list prev
        cdef int prev_kind
        self._seq += 1
        if self._covering and self._is_covered(path):
            return
        prev = self._entries.get(path)
        if prev is not None and kind == UPDATE:
            prev_kind = prev[_KIND]
            if _is_covering(prev_kind):
                return
            if prev_kind == DELETE and prev[_IS_DIR] and is_dir:
                kind = SUBTREE
        self._set(path, kind, is_dir, None, self._seq)

    cdef void _set(self, str path, int kind, bint is_dir, object src, long long seq):
        if path in self._entries:
            del self._entries[path]
            self._covering.discard(path)
            self._deleted_dirs.discard(path)
        self._entries[path] = [kind, is_dir, src, seq]
        if is_dir:
            if _is_covering(kind):
                self._covering.add(path)
            elif kind == DELETE:
                self._deleted_dirs.add(path)

    cdef bint _is_covered(self, str path):
        while path:
            path = _parent(path)
            if path in self._covering:
                return True
        return False

    cdef bint _is_dropped(self, str path, long long seq):
        cdef list entry = self._entries[path]
        cdef bint renamed = entry[_KIND] == RENAME
        while path:
            path = _parent(path)
            if path in self._covering and not renamed:
                return True
            if path in self._deleted_dirs:
                entry = self._entries[path]
                if <long long>entry[_SEQ] > seq:
                    return True
        return False

    def take(self):
        """Return every pending change, collapsed and in order, and empty the queue."""
        batch = self.peek()
        self._entries = {}
        self._covering = set()
        self._deleted_dirs = set()
        self._requeued = False
        return batch

    def peek(self):
        """What take() would return, leaving the queue as it is (for the fail log)."""
        cdef list batch = []
        cdef list e
        cdef str p
        cdef bint check
        if not self._entries:
            return batch
        items = self._entries.items()
        if self._requeued:
            items = sorted(items, key=lambda item: item[1][_SEQ])
        check = bool(self._covering) or bool(self._deleted_dirs)
        for p, e in items:
            if check and self._is_dropped(p, e[_SEQ]):
                continue
            batch.append(Event(e[_KIND], p, e[_IS_DIR], e[_SRC]))
        return batch

    def requeue(self, batch):
        """Put back a batch that did not reach the remote, as older than anything pending."""
        cdef long long seq
        cdef list newer
        cdef int kind
        if self._entries:
            seq = min(e[_SEQ] for e in self._entries.values())
        else:
            seq = self._seq + 1
        seq -= len(batch) + 1
        for event in batch:
            seq += 1
            newer = self._entries.get(event.path)
            if newer is None:
                self._set(event.path, event.kind, event.is_dir, event.src, seq)
                self._requeued = True
            elif _is_covering(event.kind) and not _is_covering(newer[_KIND]):
                kind = FULL if event.kind == FULL else SUBTREE
                self._set(event.path, kind, True, None, newer[_SEQ])
                self._requeued = True
