# cython: language_level=3
"""The compiled filter queue: the same rules as sersyncpy/_filterqueue_py.py, typed for speed.

That module is the specification and documents the rules; keep the two alike method by method.
The tests feed both the same sequences and compare the batches. One addition: ancestor walks
first ask a counting filter of the covering directories and of the deletion watermarks, so
most walks slice no string.
"""

cimport cython
from cpython.dict cimport PyDict_DelItem, PyDict_GetItem, PyDict_Next, PyDict_SetItem
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.set cimport PySet_Add, PySet_Contains, PySet_Discard
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_SET_ITEM
from libc.string cimport memset

from itertools import chain

from sersyncpy.events import Event


cdef extern from "Python.h":
    str PyUnicode_Substring(str s, Py_ssize_t start, Py_ssize_t end)
    # What tuple.__new__(Event, items) does, without the call: a tuple of Event's type to fill.
    object PyType_GenericAlloc(type t, Py_ssize_t nitems)

# The kinds of sersyncpy/events.py; the tests check that the numbers agree.
cdef enum:
    UPDATE = 1
    DELETE = 2
    SUBTREE = 3
    RENAME = 4
    FULL = 5

# The filters: for each bucket, how many directories of a set (or keys of the watermarks) have a
# path that hashes into it.
# A walk slices and looks up an ancestor only when its bucket is not empty.
cdef enum:
    _BUCKETS = 4096  # a power of two
cdef unsigned int _FNV_BASIS = 2166136261u
cdef unsigned int _FNV_PRIME = 16777619u

IMPLEMENTATION = "compiled"

cdef type _EventType = Event
assert issubclass(Event, tuple) and len(Event._fields) == 4


cdef inline bint _is_covering(int kind) noexcept:
    return kind == SUBTREE or kind == RENAME or kind == FULL


cdef inline object _event(int kind, str path, bint is_dir, object src):
    """Event(kind, path, is_dir, src) at the cost of a tuple (Event.__new__ is Python code)."""
    cdef object kind_ = kind
    cdef object is_dir_ = True if is_dir else False
    cdef object event = PyType_GenericAlloc(_EventType, 4)
    Py_INCREF(kind_)
    PyTuple_SET_ITEM(event, 0, kind_)
    Py_INCREF(path)
    PyTuple_SET_ITEM(event, 1, path)
    Py_INCREF(is_dir_)
    PyTuple_SET_ITEM(event, 2, is_dir_)
    Py_INCREF(src)
    PyTuple_SET_ITEM(event, 3, src)
    return event


cdef inline unsigned int _bucket(str path) noexcept:
    """The filter bucket of `path`: FNV-1a of its code points, as the walks below compute it
    prefix by prefix."""
    cdef unsigned int h = _FNV_BASIS
    cdef Py_UCS4 c
    for c in path:
        h = (h ^ <unsigned int>c) * _FNV_PRIME
    return h & (_BUCKETS - 1)


@cython.final
@cython.no_gc  # holds only str and None: never in a cycle, so not tracked by the collector
@cython.freelist(256)
cdef class _Entry:
    """The pending state of one path; the twin's list [kind, is_dir, src, seq]."""

    cdef int kind
    cdef bint is_dir
    cdef object src
    cdef long long seq


def _seq_of(item):
    return (<_Entry>item[1]).seq


cdef class FilterQueue:
    """Pending changes of one watch root for one remote, collapsed; not thread-safe."""

    cdef dict _entries  # path -> _Entry
    cdef set _covering
    cdef dict _deleted  # directory -> seq of its latest directory DELETE: the twin's watermarks
    cdef unsigned int _covering_filter[_BUCKETS]
    cdef unsigned int _deleted_filter[_BUCKETS]
    cdef long long _seq
    cdef bint _requeued

    def __init__(self):
        self._entries = {}
        self._covering = set()
        self._deleted = {}
        memset(self._covering_filter, 0, sizeof(self._covering_filter))
        memset(self._deleted_filter, 0, sizeof(self._deleted_filter))
        self._seq = 0
        self._requeued = False

    def __len__(self):
        return len(self._entries)

    def __bool__(self):
        return bool(self._entries)

    def push(self, int kind, str path, bint is_dir=False, str src=None):
        """Record one change; `src` is the old path of a RENAME."""
        self._push(kind, path, is_dir, src)

    def push_many(self, events):
        """push() each (kind, path, is_dir, src) of `events` (Event tuples), in order."""
        cdef object event
        cdef str path, src
        for event in events:
            if type(event) is _EventType or (
                    isinstance(event, tuple) and PyTuple_GET_SIZE(event) == 4):
                # Borrowed items, no unpacking: the typed assignments check the types.
                path = <object>PyTuple_GET_ITEM(event, 1)
                src = <object>PyTuple_GET_ITEM(event, 3)
                self._push(<object>PyTuple_GET_ITEM(event, 0), path,
                           <object>PyTuple_GET_ITEM(event, 2), src)
            else:
                kind, path, is_dir, src = event
                self._push(kind, path, is_dir, src)

    cdef int _push(self, int kind, str path, bint is_dir, str src) except -1:
        cdef _Entry prev
        cdef object origin
        if path is None:  # the twin takes any key; typed, str alone is checked
            raise TypeError("a path is a str, not None")
        if kind != RENAME:
            self._apply(kind, path, is_dir)
        elif src is None:
            raise ValueError("a RENAME needs its source path")
        elif not is_dir:
            self._apply(DELETE, src, False)
            self._apply(UPDATE, path, False)
        else:
            prev = self._get(src)
            origin = prev.src if prev is not None and prev.kind == RENAME else src
            self._apply(DELETE, src, True)
            self._seq += 1
            self._set(path, RENAME, True, origin, self._seq, self._get(path))
        return 0

    cdef inline _Entry _get(self, str path):
        cdef PyObject* found = PyDict_GetItem(self._entries, path)
        return None if found is NULL else <_Entry>found

    cdef int _apply(self, int kind, str path, bint is_dir) except -1:
        cdef _Entry prev
        self._seq += 1
        if kind == DELETE and is_dir:
            # The twin's watermark, set before the covered check as there. Watermarks go only
            # at take(), so the filter counts each path once.
            if PyDict_GetItem(self._deleted, path) is NULL:
                self._deleted_filter[_bucket(path)] += 1
            PyDict_SetItem(self._deleted, path, self._seq)
        if self._covering and self._is_covered(path):
            return 0
        prev = self._get(path)
        if prev is not None and kind == UPDATE:
            if _is_covering(prev.kind):
                return 0
            if prev.kind == DELETE and prev.is_dir and is_dir:
                kind = SUBTREE
        self._set(path, kind, is_dir, None, self._seq, prev)
        return 0

    cdef int _set(self, str path, int kind, bint is_dir, object src, long long seq,
                  _Entry prev) except -1:
        """As the twin's _set; `prev` is the entry of `path`, reused, or None."""
        cdef _Entry entry = prev
        if entry is not None:
            # Re-inserting moves the path to the end: batches follow each path's latest change.
            PyDict_DelItem(self._entries, path)
            if entry.is_dir and _is_covering(entry.kind):  # only directories are in the set
                PySet_Discard(self._covering, path)
                self._covering_filter[_bucket(path)] -= 1
        else:
            entry = _Entry.__new__(_Entry)
        entry.kind = kind
        entry.is_dir = is_dir
        entry.src = src
        entry.seq = seq
        PyDict_SetItem(self._entries, path, entry)
        if is_dir and _is_covering(kind):
            PySet_Add(self._covering, path)
            self._covering_filter[_bucket(path)] += 1
        return 0

    cdef bint _is_covered(self, str path) except -1:
        """Whether a pending ancestor of `path` sends its whole content."""
        cdef unsigned int h = _FNV_BASIS  # of the prefix before c
        cdef Py_ssize_t cut = 0
        cdef Py_UCS4 c
        if not path:
            return False
        if self._covering_filter[h & (_BUCKETS - 1)] and PySet_Contains(self._covering, ""):
            return True
        for c in path:
            if (c == "/" and cut > 0 and self._covering_filter[h & (_BUCKETS - 1)]
                    and PySet_Contains(self._covering, PyUnicode_Substring(path, 0, cut))):
                return True
            h = (h ^ <unsigned int>c) * _FNV_PRIME
            cut += 1
        return False

    cdef bint _is_dropped(self, str path, _Entry entry) except -1:
        """Whether a pending ancestor makes the entry at `path` redundant."""
        cdef bint renamed = entry.kind == RENAME
        cdef unsigned int h = _FNV_BASIS  # of the prefix before c
        cdef Py_ssize_t cut = 0
        cdef Py_UCS4 c
        if not path:
            return False
        if self._dropped_by(path, 0, h & (_BUCKETS - 1), renamed, entry.seq):
            return True
        for c in path:
            if c == "/" and cut > 0 and self._dropped_by(path, cut, h & (_BUCKETS - 1), renamed,
                                                         entry.seq):
                return True
            h = (h ^ <unsigned int>c) * _FNV_PRIME
            cut += 1
        return False

    cdef inline bint _dropped_by(self, str path, Py_ssize_t cut, unsigned int bucket,
                                 bint renamed, long long seq) except -1:
        """Whether the ancestor path[:cut] of an entry of `seq` makes it redundant."""
        cdef bint covering = not renamed and self._covering_filter[bucket]
        cdef bint deleted = self._deleted_filter[bucket] != 0
        cdef str parent
        cdef PyObject* watermark
        if not (covering or deleted):
            return False
        parent = PyUnicode_Substring(path, 0, cut) if cut > 0 else ""
        if covering and PySet_Contains(self._covering, parent):
            return True
        if not deleted:
            return False
        watermark = PyDict_GetItem(self._deleted, parent)
        return watermark is not NULL and <long long><object>watermark > seq

    def take(self):
        """Return every pending change, collapsed and in order, and empty the queue."""
        batch = self.peek()
        self._entries = {}
        if self._covering:
            self._covering = set()
            memset(self._covering_filter, 0, sizeof(self._covering_filter))
        if self._deleted:
            self._deleted = {}
            memset(self._deleted_filter, 0, sizeof(self._deleted_filter))
        self._requeued = False
        return batch

    def peek(self):
        """What take() would return, leaving the queue as it is (for the fail log)."""
        cdef list batch = []
        cdef bint check = self._covering or self._deleted
        cdef Py_ssize_t pos = 0
        cdef PyObject* key
        cdef PyObject* value
        cdef str path
        cdef _Entry entry
        if self._requeued:
            for path, entry in sorted(self._entries.items(), key=_seq_of):
                if not (check and self._is_dropped(path, entry)):
                    batch.append(_event(entry.kind, path, entry.is_dir, entry.src))
            return batch
        while PyDict_Next(self._entries, &pos, &key, &value):
            path = <str>key
            entry = <_Entry>value
            if not (check and self._is_dropped(path, entry)):
                batch.append(_event(entry.kind, path, entry.is_dir, entry.src))
        return batch

    def requeue(self, batch):
        """Put back a batch that did not reach the remote, as older than anything pending."""
        cdef long long seq
        cdef _Entry newer
        cdef int kind
        # Older than the watermarks too: an entry's path may have changed since its deletion.
        if self._entries or self._deleted:
            seq = min(chain([(<_Entry>e).seq for e in self._entries.values()],
                            self._deleted.values()))
        else:
            seq = self._seq + 1
        seq -= len(batch) + 1
        for event in batch:
            seq += 1
            newer = self._get(event.path)
            if newer is None:
                self._set(event.path, event.kind, event.is_dir, event.src, seq, None)
                self._requeued = True
            elif _is_covering(event.kind) and not _is_covering(newer.kind):
                # The newer change keeps its place, but must still carry the whole directory.
                kind = FULL if event.kind == FULL else SUBTREE
                self._set(event.path, kind, True, None, newer.seq, newer)
                self._requeued = True
