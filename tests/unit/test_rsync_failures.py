"""rsync_failures.failed_paths: which listed paths an exit 23 left behind, from its stderr.

The table holds lines captured from real rsync 3.5.0 runs (each constant says how), pushed
the way listed_argv does: source root /tmp/fp/src (or /tmp/fpn/src), daemon module "backup"
at /tmp/fp/mod, chroot off unless said. The end-to-end tests, which provoke the failures
again against a real daemon (root only), are tests/integration/test_rsync_failures.py.
"""

from __future__ import annotations

import os

import pytest

from sersyncpy import rsyncrun
from sersyncpy.rsync_failures import failed_paths

SRC = "/tmp/fp/src"
NOBODY_SRC = "/tmp/fpn/src"
SUMMARY_23 = (
    "rsync error: some files/attrs were not transferred (see previous errors) (code 23) "
    "at main.c(1394) [sender=3.5.0]"
)

# A read-only tmpfs mounted over module/b; listed a b c top, b holding f g sub/s sub2/q.
RO_SUBDIR = "\n".join([
    'rsync: [generator] failed to set permissions on "b" (in backup): Read-only file system (30)',
    'rsync: [generator] recv_generator: mkdir "b/sub" (in backup) failed: '
    "Read-only file system (30)",
    "*** Skipping any contents from this failed directory ***",
    'rsync: [generator] recv_generator: mkdir "b/sub2" (in backup) failed: '
    "Read-only file system (30)",
    "*** Skipping any contents from this failed directory ***",
    'rsync: [receiver] mkstemp "b/.f.1BO9a4" (in backup) failed: Read-only file system (30)',
    'rsync: [receiver] mkstemp "b/.g.g2tGVO" (in backup) failed: Read-only file system (30)',
    SUMMARY_23,
])
# The same against a module with "use chroot = yes": names get a leading "/".
RO_SUBDIR_CHROOT = "\n".join([
    'rsync: [generator] failed to set times on "/b" (in chr): Read-only file system (30)',
    'rsync: [generator] recv_generator: mkdir "/b/sub" (in chr) failed: '
    "Read-only file system (30)",
    "*** Skipping any contents from this failed directory ***",
    'rsync: [receiver] mkstemp "/b/.f.39Saj4" (in chr) failed: Read-only file system (30)',
    'rsync: [receiver] mkstemp "/b/.g.HiLC9d" (in chr) failed: Read-only file system (30)',
    SUMMARY_23,
])
# A read-only tmpfs over the whole module, the source holding d/f and t: listed "", then
# listed d/f alone.
RO_MODULE_ROOT = "\n".join([
    'rsync: [generator] failed to set permissions on "." (in backup): '
    "Read-only file system (30)",
    'rsync: [generator] recv_generator: mkdir "d" (in backup) failed: Read-only file system (30)',
    "*** Skipping any contents from this failed directory ***",
    'rsync: [receiver] mkstemp ".t.Otb680" (in backup) failed: Read-only file system (30)',
    SUMMARY_23,
])
RO_MISSING_PARENT = "\n".join([
    'rsync: [generator] recv_generator: mkdir "d" (in backup) failed: Read-only file system (30)',
    "*** Skipping any contents from this failed directory ***",
    SUMMARY_23,
])
# Listed c/gone2 and c/dd (gone from the source), c read-only, c/dd a read-only tmpfs.
DELETE_FAILED = "\n".join([
    "rsync: [generator] delete_file: unlink(c/dd/gone) failed: Read-only file system (30)",
    "rsync: [generator] delete_file: unlink(c/gone2) failed: Read-only file system (30)",
    SUMMARY_23,
])
# Listed r/sub and r, both gone from the source; module r/sub `chattr +i`, holding k.
RMDIR_FAILED = "\n".join([
    'file has vanished: "/tmp/fp/src/r"',
    "rsync: [generator] delete_file: unlink(r/sub/k) failed: Operation not permitted (1)",
    "rsync: [generator] delete_file: rmdir(r/sub) failed: Operation not permitted (1)",
    SUMMARY_23,
])
# Listed a/f, the module's a/f `chattr +i`.
RENAME_FAILED = "\n".join([
    'rsync: [receiver] rename "a/.f.rEM5to" (in backup) -> "a/f": Operation not permitted (1)',
    SUMMARY_23,
])
# Listed s/link (a symlink to "target") and s/fifo, a read-only tmpfs over module/s.
SPECIAL_FILES = "\n".join([
    'rsync: [generator] mknod "s/fifo" (in backup) failed: Read-only file system (30)',
    'rsync: [generator] symlink "s/link" (in backup) -> "target" failed: '
    "Read-only file system (30)",
    SUMMARY_23,
])
# Odd names below h, a read-only tmpfs over module/h, in the C.UTF-8 locale.
HOSTILE_NAMES = [
    b"back\\#101slash", b"bad\xff", "caf\u00e9".encode(), b"new\nline", b"paren) failed (x",
    b'q"uote', b"tab\there", b'x" -> "y',
]
HOSTILE_RECEIVER = "\n".join([
    r'rsync: [receiver] mkstemp "h/.back\#134#101slash.EpwZyz" (in backup) failed: '
    "Read-only file system (30)",
    r'rsync: [receiver] mkstemp "h/.bad\#377.ZPgsQt" (in backup) failed: '
    "Read-only file system (30)",
    'rsync: [receiver] mkstemp "h/.caf\u00e9.rhHlr2" (in backup) failed: '
    "Read-only file system (30)",
    r'rsync: [receiver] mkstemp "h/.new\#012line.ETkH22" (in backup) failed: '
    "Read-only file system (30)",
    'rsync: [receiver] mkstemp "h/.paren) failed (x.epHH0G" (in backup) failed: '
    "Read-only file system (30)",
    'rsync: [receiver] mkstemp "h/.q"uote.XrmJHu" (in backup) failed: '
    "Read-only file system (30)",
    'rsync: [receiver] mkstemp "h/.tab\there.bBZgfR" (in backup) failed: '
    "Read-only file system (30)",
    'rsync: [receiver] mkstemp "h/.x" -> "y.lgasuA" (in backup) failed: '
    "Read-only file system (30)",
    SUMMARY_23,
])
# The same with LC_ALL=C: rsync escapes every byte that is not printable ASCII.
CAFE_C_LOCALE = (
    r'rsync: [receiver] mkstemp "h/.caf\#303\#251.jlfpce" (in backup) failed: '
    "Read-only file system (30)\n" + SUMMARY_23
)
# Names with U+2028 and U+0085, printed raw in a UTF-8 locale (str.splitlines splits there).
LINE_SEPARATORS = "\n".join([
    'rsync: [receiver] mkstemp "u8/.line\u2028sep.GvE6db" (in backup) failed: '
    "Read-only file system (30)",
    'rsync: [receiver] mkstemp "u8/.nel\x85x.IeZKFj" (in backup) failed: '
    "Read-only file system (30)",
    SUMMARY_23,
])
# The same names in the source, each a bind mount of a sysfs file that stats as 4096 bytes
# and reads as EIO (/sys/devices/system/cpu/power/autosuspend_delay_ms).
HOSTILE_SENDER = "\n".join([
    r'rsync: [sender] read errors mapping "/tmp/fp/src/h/back\#134#101slash": '
    "Input/output error (5)",
    r'rsync: [sender] read errors mapping "/tmp/fp/src/h/bad\#377": Input/output error (5)',
    'rsync: [sender] read errors mapping "/tmp/fp/src/h/caf\u00e9": Input/output error (5)',
    r'rsync: [sender] read errors mapping "/tmp/fp/src/h/new\#012line": Input/output error (5)',
    'rsync: [sender] read errors mapping "/tmp/fp/src/h/paren) failed (x": '
    "Input/output error (5)",
    'rsync: [sender] read errors mapping "/tmp/fp/src/h/q"uote": Input/output error (5)',
    'rsync: [sender] read errors mapping "/tmp/fp/src/h/tab\there": Input/output error (5)',
    'rsync: [sender] read errors mapping "/tmp/fp/src/h/x" -> "y": Input/output error (5)',
    r"ERROR: h/back\#134#101slash failed verification -- update discarded.",
    r"ERROR: h/bad\#377 failed verification -- update discarded.",
    "ERROR: h/caf\u00e9 failed verification -- update discarded.",
    r"ERROR: h/new\#012line failed verification -- update discarded.",
    "ERROR: h/paren) failed (x failed verification -- update discarded.",
    'ERROR: h/q"uote failed verification -- update discarded.',
    "ERROR: h/tab\there failed verification -- update discarded.",
    'ERROR: h/x" -> "y failed verification -- update discarded.',
    SUMMARY_23,
])
# Listed top/x while top is a file; then loop/x, loop a symlink to itself.
LINK_STAT_ENOTDIR = (
    'rsync: [sender] link_stat "/tmp/fp/src/top/x" failed: Not a directory (20)\n' + SUMMARY_23
)
LINK_STAT_ELOOP = (
    'rsync: [sender] link_stat "/tmp/fp/src/loop/x" failed: Too many levels of symbolic links '
    "(40)\n" + SUMMARY_23
)
# As user nobody from /tmp/fpn/src: u/locked is 0700, u/secret 0600; listed u, then
# u/secret, u/locked/in and u/open.
UNREADABLE_DIR = "\n".join([
    'rsync: [sender] opendir "/tmp/fpn/src/u/locked" failed: Permission denied (13)',
    'rsync: [sender] send_files failed to open "/tmp/fpn/src/u/secret": Permission denied (13)',
    SUMMARY_23,
])
UNREADABLE_FILES = "\n".join([
    'rsync: [sender] link_stat "/tmp/fpn/src/u/locked/in" failed: Permission denied (13)',
    'rsync: [sender] send_files failed to open "/tmp/fpn/src/u/secret": Permission denied (13)',
    SUMMARY_23,
])
# With -v, listed e/rd, the sysfs file below: rsync redoes the first mismatch itself.
VERIFY_WARNING = "WARNING: e/rd failed verification -- update discarded (will try again)."
# A local push (as over ssh) to /tmp/fp/ldst, a read-only tmpfs over its b; no module,
# so the receiver names absolute paths.
LOCAL_ABSOLUTE = "\n".join([
    'rsync: [generator] failed to set times on "/tmp/fp/ldst/b": Read-only file system (30)',
    'rsync: [generator] recv_generator: mkdir "/tmp/fp/ldst/b/sub" failed: '
    "Read-only file system (30)",
    "*** Skipping any contents from this failed directory ***",
    'rsync: [receiver] mkstemp "/tmp/fp/ldst/b/.f.ammzId" failed: Read-only file system (30)',
    'rsync: [receiver] mkstemp "/tmp/fp/ldst/b/.g.WrP5Fo" failed: Read-only file system (30)',
    SUMMARY_23,
])
LOCAL_ABSOLUTE_FILE = (
    'rsync: [receiver] mkstemp "/tmp/fp/ldst/b/.f.ammzId" failed: Read-only file system (30)\n'
    + SUMMARY_23
)
# Listed r/sub when r is gone from the source: only a vanished implied directory.
VANISHED_ONLY = (
    'file has vanished: "/tmp/fp/src/r"\n'
    "rsync warning: some files vanished before they could be transferred (code 24) "
    "at main.c(1394) [sender=3.5.0]"
)
# A 64k tmpfs over module/big, listed big/blob (300 kB): the receiver gives up, exit 11.
DISK_FULL = "\n".join([
    'rsync: [receiver] write failed on "big/blob" (in backup): No space left on device (28)',
    "rsync error: error in file IO (code 11) at receiver.c(657) [receiver=3.5.0]",
    "rsync error: error in file IO (code 11) at io.c(1892) [generator=3.5.0]",
])
# --port=1: nothing listens.
REFUSED = (
    "rsync: [sender] failed to connect to 127.0.0.1 (127.0.0.1): Connection refused (111)\n"
    "rsync error: error in socket IO (code 10) at clientserver.c(165) [sender=3.5.0]"
)
# On stdout, after a sender error, when the run had --delete.
DELETIONS_SKIPPED = "IO error encountered -- skipping file deletion"


def hostile(prefix: str) -> list[str]:
    return [os.fsdecode(prefix.encode() + name) for name in HOSTILE_NAMES]


LISTED_ABC = ["a", "b", "c", "top"]
LISTED_FILES = ["a/f", "b/f", "b/g", "b/sub/s", "b/sub2/q", "c/f", "top"]

CASES = {
    # name: (stderr, listed, keyword arguments, expected)
    "listed-dir": (RO_SUBDIR, LISTED_ABC, {}, {"b"}),
    "files-below-failed-dirs": (
        RO_SUBDIR, LISTED_FILES, {}, {"b/f", "b/g", "b/sub/s", "b/sub2/q"},
    ),
    "spellings-kept": (RO_SUBDIR, ["./b/", "a"], {}, {"./b/"}),
    "chroot": (RO_SUBDIR_CHROOT, LISTED_ABC, {}, {"b"}),
    "chroot-is-module-relative": (
        RO_SUBDIR_CHROOT, ["b/f", "b/g", "b/sub/s", "f"], {}, {"b/f", "b/g", "b/sub/s"},
    ),
    "module-root-listed": (RO_MODULE_ROOT, ["", "x"], {}, {"", "x"}),
    "module-root-fails-all": (RO_MODULE_ROOT, ["d/f", "t"], {}, {"d/f", "t"}),
    "failed-mkdir-of-implied-parent": (RO_MISSING_PARENT, ["d/f", "e/f"], {}, {"d/f"}),
    "unlink": (DELETE_FAILED, ["c/gone2", "c/dd", "c/other", "cc"], {}, {"c/gone2", "c/dd"}),
    "rmdir-with-vanished": (RMDIR_FAILED, ["r/sub", "r", "q"], {}, {"r/sub", "r"}),
    "rename": (RENAME_FAILED, ["a/f", "a/g", "f"], {}, {"a/f"}),
    "mknod-and-symlink": (SPECIAL_FILES, ["s/fifo", "s/link", "s/other"], {},
                          {"s/fifo", "s/link"}),
    "hostile-receiver": (
        HOSTILE_RECEIVER, hostile("h/") + hostile("ok/") + ["h/x", "h/y"], {},
        set(hostile("h/")),
    ),
    "c-locale-escapes": (CAFE_C_LOCALE, ["h/caf\u00e9", "h/caf"], {}, {"h/caf\u00e9"}),
    "line-separators-in-names": (
        LINE_SEPARATORS, ["u8/line\u2028sep", "u8/nel\x85x", "u8/line"], {},
        {"u8/line\u2028sep", "u8/nel\x85x"},
    ),
    "hostile-sender": (
        HOSTILE_SENDER, hostile("h/") + hostile("ok/"), {"directories": ()},
        set(hostile("h/")),
    ),
    "link-stat": (LINK_STAT_ENOTDIR, ["top/x", "a/f"], {"directories": ()}, {"top/x"}),
    "link-stat-eloop": (LINK_STAT_ELOOP, ["loop/x", "loop"], {"directories": ()},
                        {"loop/x", "loop"}),
    "sender-error-retries-listed-dirs": (
        LINK_STAT_ENOTDIR, ["top/x", "c", "a/f"], {"directories": ["c"]}, {"top/x", "c"},
    ),
    "sender-error-retries-the-root": (
        LINK_STAT_ENOTDIR, ["top/x", "", "a/f"], {"directories": ()}, {"top/x", ""},
    ),
    "unreadable-dir": (
        UNREADABLE_DIR, ["u", "v"], {"root": NOBODY_SRC, "directories": ["u", "v"]}, {"u", "v"},
    ),
    "unreadable-files": (
        UNREADABLE_FILES, ["u/secret", "u/locked/in", "u/open"],
        {"root": NOBODY_SRC, "directories": ()}, {"u/secret", "u/locked/in"},
    ),
    "redone-verification-is-no-failure": (
        VERIFY_WARNING + "\n" + RENAME_FAILED, ["e/rd", "a/f"], {}, {"a/f"},
    ),
    "absolute-by-suffix": (LOCAL_ABSOLUTE, ["a", "b", 'h/q"uote'], {}, {"b"}),
    # The receiver's directory is unknown: "/tmp/fp/ldst/b/.f.XXXXXX" may be "f" in one at
    # /tmp/fp/ldst/b, so "f" is retried too; "g" is not.
    "absolute-by-suffix-may-retry-more": (LOCAL_ABSOLUTE_FILE, ["b/f", "f", "g"], {},
                                          {"b/f", "f"}),
}


@pytest.mark.parametrize(("stderr", "listed", "kwargs", "expected"), CASES.values(),
                         ids=CASES.keys())
def test_failed_paths_from_real_messages(stderr, listed, kwargs, expected):
    assert failed_paths(stderr, listed, **{"root": SRC, **kwargs}) == expected


UNKNOWN = {
    # name: (stderr, listed, keyword arguments)
    "sender-error-without-directories": (LINK_STAT_ENOTDIR, ["top/x", "c"], {}),
    "hostile-sender-without-directories": (HOSTILE_SENDER, hostile("h/"), {}),
    "deletions-skipped": (DELETIONS_SKIPPED + "\n" + RENAME_FAILED, ["a/f", "c"], {}),
    "error-naming-no-listed-path": (RO_SUBDIR, ["a", "c"], {}),
    "only-vanished": (VANISHED_ONLY, ["r/sub"], {}),
    "only-the-summary": (SUMMARY_23, ["a"], {}),
    "empty": ("", ["a"], {}),
    "exit-11-disk-full": (DISK_FULL, ["big/blob", "a"], {}),
    "exit-10-refused": (REFUSED, ["a"], {"directories": ()}),
    "redone-verification-alone": (VERIFY_WARNING + "\n" + SUMMARY_23, ["e/rd"], {}),
}


@pytest.mark.parametrize(("stderr", "listed", "kwargs"), UNKNOWN.values(), ids=UNKNOWN.keys())
def test_failed_paths_unknown(stderr, listed, kwargs):
    assert failed_paths(stderr, listed, **{"root": SRC, **kwargs}) is None


def test_a_truncated_stderr_is_unknown_because_run_keeps_only_the_tail():
    # Lines that stay under run()'s limit are read; a stderr cut at the limit is not trusted.
    line = RENAME_FAILED.split("\n")[0]
    kept = rsyncrun.STDERR_KEPT
    short = "\n".join([line] * ((kept - 1) // (len(line) + 1)))
    assert failed_paths(short, ["a/f"], SRC) == {"a/f"}
    assert failed_paths(("x" * kept + "\n" + short)[-kept:], ["a/f"], SRC) is None


def test_a_root_that_rsync_prints_resolved_still_matches_by_suffix():
    # The watch root may be a symlink; rsync names the source by its real path.
    assert failed_paths(
        LINK_STAT_ENOTDIR, ["top/x", "a"], "/srv/link-to-src", directories=()
    ) == {"top/x"}
