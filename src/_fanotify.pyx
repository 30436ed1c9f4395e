# cython: language_level=3
"""The fanotify system calls, compiled: a group reporting directory file handles and names,
its marks, one read parsed into plain tuples, and a directory handle opened back to a path.
What the events mean, and which directories are ours, is sersyncpy/fanwatch.py's.
"""

from libc.errno cimport errno
from libc.stdint cimport int32_t, uint16_t, uint32_t, uint64_t, uint8_t
from libc.string cimport memcpy, strlen
from posix.unistd cimport close, read

import os

cdef extern from "<sys/fanotify.h>":
    int fanotify_init(unsigned int flags, unsigned int event_f_flags)
    int fanotify_mark(int fanotify_fd, unsigned int flags, uint64_t mask, int dirfd,
                      const char *pathname)

cdef extern from "<fcntl.h>":
    int open_by_handle_at(int mount_fd, void *handle, int flags)
    int name_to_handle_at(int dirfd, const char *pathname, void *handle, int *mount_id,
                          int flags)
    int O_PATH
    int O_RDONLY
    int O_CLOEXEC
    int O_LARGEFILE
    int O_DIRECTORY
    int AT_FDCWD
    int AT_SYMLINK_FOLLOW

cdef extern from "<sys/vfs.h>":
    ctypedef struct fsid_t:
        int __val[2]
    struct statfs:
        long f_type
        fsid_t f_fsid
    int c_statfs "statfs"(const char *path, statfs *buf)

cdef extern from "<unistd.h>":
    ssize_t readlink(const char *path, char *buf, size_t bufsiz)

cdef extern from "<sys/stat.h>":
    struct stat:
        unsigned long st_nlink
    int fstat(int fd, stat *buf)

# The kernel's values (linux/fanotify.h), which every kernel keeps.
FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_CLASS_NOTIF = 0x0
FAN_REPORT_DIR_FID = 0x400
FAN_REPORT_NAME = 0x800
FAN_REPORT_DFID_NAME = FAN_REPORT_DIR_FID | FAN_REPORT_NAME
FAN_MARK_ADD = 0x1
FAN_MARK_REMOVE = 0x2
FAN_MARK_DONT_FOLLOW = 0x4
FAN_MARK_ONLYDIR = 0x8
FAN_MARK_FILESYSTEM = 0x100
FAN_MARK_INODE = 0x0

cdef enum:
    _METADATA_LEN = 24  # struct fanotify_event_metadata
    _INFO_DFID_NAME = 2
    _INFO_DFID = 3
    _INFO_OLD_DFID_NAME = 10
    _INFO_NEW_DFID_NAME = 12
    _MAX_HANDLE = 128  # MAX_HANDLE_SZ


cdef inline object _record(const char *info, Py_ssize_t info_len, bint named):
    """(key, name) of one DFID(_NAME) record: key is the fsid (8 bytes) followed by the
    struct file_handle (its 8-byte header and handle), name the entry's bytes (b"" if none)."""
    cdef uint32_t handle_bytes
    cdef Py_ssize_t head = 4 + 8  # the info header, then __kernel_fsid_t
    cdef Py_ssize_t key_len
    cdef const char *name
    if info_len < head + 8:
        return None
    memcpy(&handle_bytes, info + head, 4)
    key_len = 8 + 8 + <Py_ssize_t>handle_bytes
    if handle_bytes > _MAX_HANDLE or 4 + key_len > info_len:
        return None
    key = info[4:4 + key_len]
    if not named or 4 + key_len >= info_len:
        return (key, b"")
    name = info + 4 + key_len
    return (key, name[:strlen(name)])


cdef class Group:
    """One fanotify group: marks added by path; read() gives, per event,
    (mask, key, name, key2, name2): for FAN_RENAME the old entry then the new one (either
    key None when the kernel reported only one side), else key2 is None; a queue overflow is
    (mask, None, b"", None, b"")."""

    # What the events of a directory known to be outside the roots cost: its key's bytes and
    # a set lookup, here, instead of a tuple and a turn of the caller's loop.

    cdef int fd

    def __cinit__(self):
        self.fd = -1

    def __init__(self, unsigned int flags):
        self.fd = fanotify_init(flags, O_RDONLY | O_CLOEXEC | O_LARGEFILE)
        if self.fd < 0:
            raise OSError(errno, os.strerror(errno))

    def fileno(self):
        return self.fd

    def mark(self, bytes path, unsigned int flags, uint64_t mask):
        if fanotify_mark(self.fd, flags, mask, AT_FDCWD, path) < 0:
            raise OSError(errno, os.strerror(errno), os.fsdecode(path))

    def close(self):
        if self.fd >= 0:
            close(self.fd)
            self.fd = -1

    def __dealloc__(self):
        if self.fd >= 0:
            close(self.fd)

    def read(self, Py_ssize_t size, set skip):
        """The events of one read of at most `size` bytes; [] when none is waiting. Those
        whose directories' keys are all in `skip` (outside the roots) are left out."""
        cdef bytes buf = bytes(size)
        cdef char *data = buf
        cdef ssize_t got
        cdef Py_ssize_t at = 0, end, info_at
        cdef uint32_t event_len
        cdef uint16_t metadata_len, info_len
        cdef uint64_t mask
        cdef uint8_t info_type
        cdef int32_t fd
        with nogil:
            got = read(self.fd, data, size)
        if got < 0:
            if errno == 11:  # EAGAIN: nothing waiting
                return []
            raise OSError(errno, os.strerror(errno))
        out = []
        while at + _METADATA_LEN <= got:
            memcpy(&event_len, data + at, 4)
            memcpy(&metadata_len, data + at + 6, 2)
            memcpy(&mask, data + at + 8, 8)
            memcpy(&fd, data + at + 16, 4)
            if event_len < _METADATA_LEN or at + event_len > got:
                break
            if fd >= 0:
                close(fd)  # never asked for (FID groups report none), closed if ever given
            end = at + event_len
            info_at = at + metadata_len
            first = None
            second = None
            while info_at + 4 <= end:
                info_type = <uint8_t>data[info_at]
                memcpy(&info_len, data + info_at + 2, 2)
                if info_len < 4 or info_at + info_len > end:
                    break
                if info_type == _INFO_DFID_NAME or info_type == _INFO_OLD_DFID_NAME:
                    first = _record(data + info_at, info_len, True)
                elif info_type == _INFO_NEW_DFID_NAME:
                    second = _record(data + info_at, info_len, True)
                    if first is None:
                        first = (None, b"")
                elif info_type == _INFO_DFID and first is None:
                    first = _record(data + info_at, info_len, False)
                info_at += info_len
            at = end
            if first is None:
                first = (None, b"")
            elif first[0] in skip and (second is None or second[0] in skip):
                continue
            if second is None:
                second = (None, b"")
            out.append((mask, first[0], first[1], second[0], second[1]))
        return out


def resolve(int mount_fd, bytes key):
    """The path (bytes) of the directory whose handle `key` holds (as Group.read gives it),
    opened through `mount_fd` (not an O_PATH one); None when it is gone (ESTALE, or deleted
    while open elsewhere). Raises OSError(ENAMETOOLONG) for a path of PATH_MAX or more."""
    cdef char target[4096]
    cdef ssize_t n
    cdef int fd
    cdef stat st
    cdef const char *k = key
    if len(key) < 16:
        return None
    fd = open_by_handle_at(mount_fd, <void *>(k + 8), O_PATH | O_CLOEXEC)
    if fd < 0:
        return None
    if fstat(fd, &st) < 0 or st.st_nlink == 0:
        close(fd)
        return None
    name = b"/proc/self/fd/%d" % fd
    n = readlink(name, target, sizeof(target))
    cdef int error = errno
    close(fd)
    if n >= <ssize_t>sizeof(target) or (n < 0 and error == 36):
        raise OSError(36, os.strerror(36))  # ENAMETOOLONG
    if n <= 0:
        return None
    return target[:n]


def handle_key(bytes path, bytes fsid):
    """The key Group.read would give for the directory `path` (fsid: its 8 bytes), or None
    when its file system gives no handles."""
    cdef char handle[8 + _MAX_HANDLE]
    cdef uint32_t size = _MAX_HANDLE
    cdef int mount_id
    memcpy(handle, &size, 4)
    if name_to_handle_at(AT_FDCWD, path, handle, &mount_id, 0) < 0:
        return None
    memcpy(&size, handle, 4)
    return fsid + handle[:8 + size]


def fs_info(bytes path):
    """statfs(2) of the file system holding `path`: (f_type, f_fsid as the 8 bytes an event
    record carries)."""
    cdef statfs buf
    cdef char fsid[8]
    if c_statfs(path, &buf) < 0:
        raise OSError(errno, os.strerror(errno), os.fsdecode(path))
    memcpy(fsid, &buf.f_fsid, 8)
    return buf.f_type, fsid[:8]
