"""Plugins end to end: the real sersyncpy command, real inotify, real rsync daemons, and real
local servers recording what each plugin sends (servers.py).

Sync mode (<sersync><plugin start="true">) passes a change on only once every remote has
it; `-m NAME` runs one plugin alone on its own <localpath>, with no rsync at all.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Optional
from urllib.parse import parse_qsl, quote, quote_plus
from xml.sax.saxutils import quoteattr

import pytest
from conftest import free_port, wait_until

from integration.conftest import (
    confxml,
    remote_entry,
    same_tree,
    status_after,
    status_when,
    write,
)
from integration.servers import HttpRecorder, TcpRecorder

SERSYNCPY = [sys.executable, "-m", "sersyncpy"]

# inotify masks the http plugin reports (see sersyncpy/plugins/__init__.py and the README)
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_ISDIR = 0x40000000

BASE = "http://pic.example.com/cms"
PASSWORD = "S3cr3t-pw"
DIR = "<dir>"  # a directory in tree_state()


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def servers():
    """servers(server) -> server, stopped at teardown (stop() may also be called before)."""
    started = []

    def keep(server):
        started.append(server)
        return server

    yield keep
    for server in reversed(started):
        server.stop()


def with_plugin(text: str, name: str, section: str, start: bool = True) -> str:
    """confxml() text with a top-level <plugin> section; `start` turns it on in <sersync>
    (sync mode); -m NAME needs only the section."""
    off = '<plugin start="false" name="command"/>'
    assert off in text
    if start:
        text = text.replace(off, f'<plugin start="true" name="{name}"/>')
    return text.replace("</head>", f"{section}\n</head>")


def socket_section(watch, port: int, fmt: str = "sersync", extra: str = "") -> str:
    return f"""    <plugin name="socket"{extra}>
        <localpath watch={quoteattr(str(watch))}>
            <deshost ip="127.0.0.1" port="{port}" format="{fmt}"/>
        </localpath>
    </plugin>"""


def cdn_section(watch: str, port: int, *, regex: bool = False, match: str = "unused",
                method: str = "", password: str = PASSWORD) -> str:
    method_attr = f" method={quoteattr(method)}" if method else ""
    return f"""    <plugin name="refreshCDN">
        <localpath watch={quoteattr(watch)}>
            <cdninfo domainname="127.0.0.1" port="{port}" username="cdnuser"
                     passwd={quoteattr(password)}{method_attr}/>
            <sendurl base={quoteattr(BASE)}/>
            <regexurl regex="{'true' if regex else 'false'}" match={quoteattr(match)}/>
        </localpath>
    </plugin>"""


def http_section(watch, port: int, fmt: str = "form") -> str:
    return f"""    <plugin name="http">
        <localpath watch={quoteattr(str(watch))}>
            <deshost url="http://127.0.0.1:{port}/hook" format="{fmt}"/>
        </localpath>
    </plugin>"""


def command_section(prefix: list[str], suffix: str, includes: tuple[str, ...],
                    ignore_error: bool) -> str:
    include_xml = "\n".join(f"            <include expression={quoteattr(e)}/>"
                            for e in includes)
    return f"""    <plugin name="command">
        <param prefix={quoteattr(shlex.join(prefix))} suffix={quoteattr(suffix)}
               ignoreError="{'true' if ignore_error else 'false'}" timeout="30"/>
        <filter start="{'true' if includes else 'false'}">
{include_xml}
        </filter>
    </plugin>"""


def no_rsync_config(tmp_path: Path, src: Path, port: Optional[int] = None) -> str:
    """A valid config whose one remote is a port where no rsync daemon listens (`port`, a
    rsync_trap()'s, or a free one): -m must never contact it (and sync mode could not
    replicate)."""
    password = tmp_path / "rsync.pas"
    password.write_text("secret\n")
    password.chmod(0o600)
    remote = SimpleNamespace(port=port or free_port(), user="sersync", password_file=password)
    return confxml([(src, [(remote, "backup")])])


def start_alone(sersyncpy, text: str, name: str, *flags: str):
    """sersyncpy -m NAME, once it says the plugin runs (its start-up notice: -m writes no
    status file)."""
    proc = sersyncpy(text, "-m", name, *flags, wait=False)
    wait_until(lambda: f"running plugin {name} alone" in proc.log()
               or proc.proc.poll() is not None, timeout=30, message="-m did not start")
    assert proc.proc.poll() is None, f"sersyncpy -m {name} exited early:\n{proc.log()}"
    return proc


def rsync_trap(servers) -> TcpRecorder:
    """A listener for no_rsync_config's remote: every connection to it (an rsync, a start-up
    resync, a probe) is recorded."""
    return servers(TcpRecorder())


def no_rsync_ran(trap: TcpRecorder) -> bool:
    return trap.connections == []


def tree_state(root: Path, under: str = "") -> dict:
    """{relative path (bytes): file bytes, or DIR} of everything below root (or only below
    root/under), now."""
    state = {}
    top = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(os.path.join(top, os.fsencode(under))):
        for name in dirnames:
            state[os.path.relpath(os.path.join(dirpath, name), top)] = DIR
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                with open(path, "rb") as f:
                    state[os.path.relpath(path, top)] = f.read()
            except OSError:
                pass  # an rsync temporary file renamed meanwhile
    return state


class Arrivals:
    """on_data for a TcpRecorder in sersync's format (one path per connection): every path
    that arrives, with the state of each replica at that moment."""

    def __init__(self, *replicas: Path, under: str = ""):
        self.replicas = replicas
        self.under = under  # only what is below this is recorded
        self._seen: list[tuple[bytes, list[dict]]] = []
        self._lock = threading.Lock()

    def __call__(self, data: bytes) -> None:
        states = [tree_state(replica, self.under) for replica in self.replicas]
        with self._lock:
            self._seen.append((data, states))

    def paths(self) -> list[bytes]:
        with self._lock:
            return [data for data, _ in self._seen]

    def of(self, path) -> list[list[dict]]:
        """The replicas' states at each arrival of `path`, in order."""
        wanted = os.fsencode(path)
        with self._lock:
            return [states for data, states in self._seen if data == wanted]

    def wait(self, path, count: int, timeout: float = 10.0) -> list[list[dict]]:
        wait_until(lambda: len(self.of(path)) >= count, timeout=timeout,
                   message=f"arrival #{count} of {os.fsdecode(path)!r}; got {self.paths()}")
        return self.of(path)


def json_lines(stream: bytes) -> list[dict]:
    return [json.loads(line) for line in stream.splitlines()]


def without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "time"} for record in records]


def change(kind: str, path, is_dir: bool) -> dict:
    return {"kind": kind, "path": os.fsdecode(path), "is_dir": is_dir}


# --------------------------------------------------------------------------- 1. sync mode gate


def test_sync_socket_notice_comes_only_once_the_replica_has_the_change(
        daemon, src, sersyncpy, servers, tmp_path):
    replica = daemon.modules["backup"]
    arrivals = Arrivals(replica)
    rec = servers(TcpRecorder(on_data=arrivals))
    # In sync mode the plugin's own <localpath watch> is not watched, and need not exist.
    text = with_plugin(confxml([(src, [(daemon, "backup")])]), "socket",
                       socket_section(tmp_path / "not-used-in-sync-mode", rec.port))
    sersyncpy(text)

    f = write(src / "f.txt", b"hello")
    [state] = arrivals.wait(f, 1)
    assert state[0].get(b"f.txt") == b"hello"

    os.mkdir(src / "newdir")
    [state] = arrivals.wait(src / "newdir", 1)
    assert state[0].get(b"newdir") == DIR
    # (only now: a file written into a directory before its watch is set has no event of
    # its own, so no notice; the directory's push carries it to the replica)
    inner = write(src / "newdir/inner", b"inner bytes")
    [state] = arrivals.wait(inner, 1)
    assert state[0].get(b"newdir/inner") == b"inner bytes"

    os.unlink(f)
    _, state = arrivals.wait(f, 2)
    assert b"f.txt" not in state[0], "delete notice before the replica lost the file"

    os.unlink(inner)  # (rm -r is test_sync_delete_notices_of_a_removed_tree_...)
    _, state = arrivals.wait(inner, 2)
    assert b"newdir/inner" not in state[0]
    os.rmdir(src / "newdir")
    _, state = arrivals.wait(src / "newdir", 2)
    assert b"newdir" not in state[0], "delete notice before the replica lost the directory"
    same_tree(src, replica)
    # One notice per change, no more: a later change's comes next (notices go in order).
    last = write(src / "last", b"last")
    expected = [os.fsencode(p) for p in (f, src / "newdir", inner, f, inner, src / "newdir",
                                         last)]
    wait_until(lambda: rec.messages() == expected, timeout=10,
               message=f"expected {expected}; got {rec.messages()}")


@pytest.fixture
def fast_dir():
    """A directory on tmpfs when there is one (/dev/shm): tens of thousands of mkdirs take
    a tenth of the time they take on a disk. Removed at teardown."""
    shm = "/dev/shm"
    base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="sersyncpy-test-", dir=base))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_sync_delete_notices_of_a_removed_tree_wait_for_the_replica(
        fast_dir, daemon, sersyncpy, servers, monkeypatch):
    # A plain `rm -r` of directories with files loses this race now and then (12 of 200
    # files in a trial); here it is forced: the watcher is kept busy watching a large tree
    # moved in while the lane's delete hold expires.
    monkeypatch.setenv("SERSYNCPY_DELETE_HOLD_SECONDS", "0.3")
    src = fast_dir / "src"
    big = fast_dir / "big"
    for path in (src, big):
        path.mkdir()
    for i in range(200):
        os.mkdir(big / str(i))
        for j in range(200):
            os.mkdir(big / f"{i}/{j}")
    replica = daemon.modules["backup"]
    arrivals = Arrivals(replica, under="d")
    rec = servers(TcpRecorder(on_data=arrivals))
    # rsync need not copy the big tree: only the watcher's time matters
    # queue="50": the 40,000 notices of big's directories (one per directory moved in) are
    # dropped but the last few, so d's own wait for no crowd of one-connection deliveries.
    text = with_plugin(confxml([(src, [(daemon, "backup")])], params="-a --exclude=/big/"),
                       "socket", socket_section(src, rec.port, extra=' queue="50"'))
    proc = sersyncpy(text, "--debug")
    os.mkdir(src / "d")
    arrivals.wait(src / "d", 1)
    f = write(src / "d/f", b"x")
    arrivals.wait(f, 1)

    os.unlink(f)
    # Log text kept: the DEBUG line of the batch marks the moment the delete is held, a 0.3 s
    # window no status document (every 2 s) could catch.
    wait_until(lambda: "batch: delete 'd/f'" in proc.log(), interval=0.005)  # held 0.3 s
    os.rename(big, src / "big")  # 40,000 directories (~0.6 s) for the watcher to watch ...
    os.rmdir(src / "d")  # ... before it sees this
    arrivals.wait(src / "d", 2, timeout=20)
    same_tree(src, replica, ignore=("big",))
    for states in arrivals.of(f)[1:]:  # d's notice may stand for f's; if f's comes, late
        assert b"d/f" not in states[0], (
            f"delete notice while the replica still had the file:\n{proc.log()[-6000:]}")


def test_sync_socket_with_two_remotes_waits_for_both(rsync_daemon, src, sersyncpy, servers):
    d1, d2 = rsync_daemon(), rsync_daemon()
    r1, r2 = d1.modules["backup"], d2.modules["backup"]
    arrivals = Arrivals(r1, r2)
    rec = servers(TcpRecorder(on_data=arrivals))
    text = with_plugin(confxml([(src, [(d1, "backup"), (d2, "backup")])]), "socket",
                       socket_section(src, rec.port))
    sersyncpy(text)
    payloads = {f"f{i}": os.urandom(1000 * (i + 1)) for i in range(5)}
    payloads["big"] = os.urandom(8 << 20)  # takes a while to push: the notice must wait
    os.mkdir(src / "sub")
    arrivals.wait(src / "sub", 1)  # watched from now on: each file has its own event
    for name, data in payloads.items():
        write(src / "sub" / name, data)
    for name, data in payloads.items():
        [states] = arrivals.wait(src / "sub" / name, 1, timeout=20)
        for state in states:
            assert state.get(os.fsencode(f"sub/{name}")) == data, name
    same_tree(src, r1)
    same_tree(src, r2)


def test_sync_socket_no_notice_while_a_remote_is_down_then_after_it_is_back(
        rsync_daemon, src, sersyncpy, servers):
    up, down = rsync_daemon(), rsync_daemon()
    r_up, r_down = up.modules["backup"], down.modules["backup"]
    arrivals = Arrivals(r_up, r_down)
    rec = servers(TcpRecorder(on_data=arrivals))
    text = with_plugin(confxml([(src, [(up, "backup"), (down, "backup")])]), "socket",
                       socket_section(src, rec.port))
    proc = sersyncpy(text)
    before = write(src / "before", b"both up")
    arrivals.wait(before, 1)

    down.stop()
    f = write(src / "while-down", b"only one remote can have it")
    wait_until(lambda: (r_up / "while-down").exists()
               and (r_up / "while-down").read_bytes() == b"only one remote can have it")
    failed = status_when(proc, lambda d: remote_entry(d, down)["failed_batches"] >= 1,
                         timeout=15, message="no failed push to the remote that is down")
    assert remote_entry(failed, down)["pending"] == 1
    # The other remote has it: the notice waits in the gate for this one, and is not sent.
    doc = status_after(proc, time.time(), lambda d: d["plugin"]["waiting_for_remotes"] >= 1,
                       message="the notice is not waiting for the remote that is down")
    assert (doc["plugin"]["waiting_for_remotes"], doc["plugin"]["delivered"]) == (1, 1), doc
    assert not arrivals.of(f)

    down.start()
    [states] = arrivals.wait(f, 1, timeout=20)
    assert [state.get(b"while-down") for state in states] == [b"only one remote can have it"] * 2
    same_tree(src, r_up)
    same_tree(src, r_down)
    assert rec.messages() == [os.fsencode(before), os.fsencode(f)]


# --------------------------------------------------------------------------- 2. bad targets


class Stalled:
    """A listener that never accepts, with its accept queue full: a connect to it hangs
    (the kernel drops the SYNs) until the client gives up."""

    def __init__(self):
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(0)
        self.port = self._sock.getsockname()[1]
        self._fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", self.port))
            self._fillers.append(filler)
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            with pytest.raises(OSError):  # a timeout: what the plugin meets
                probe.connect(("127.0.0.1", self.port))
        finally:
            probe.close()

    def stop(self):
        for s in [*self._fillers, self._sock]:
            s.close()


class Deaf:
    """Accepts every connection and never reads from it."""

    def __init__(self):
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="deaf server", daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self.accepted.append(conn)

    def stop(self):
        self._stopping.set()
        self._thread.join()
        for s in [*self.accepted, self._sock]:
            s.close()


@pytest.mark.parametrize("target", ["nothing-listening", "never-accepts", "never-reads"])
def test_sync_a_dead_or_stuck_plugin_target_never_slows_replication(
        daemon, src, sersyncpy, servers, target):
    fmt = "sersync"
    if target == "nothing-listening":
        port = free_port()
    elif target == "never-accepts":
        port = servers(Stalled()).port
    else:
        port = servers(Deaf()).port
        fmt = "json"
    text = with_plugin(confxml([(src, [(daemon, "backup")])]), "socket",
                       socket_section(src, port, fmt, extra=' queue="3" retrySeconds="2"'))
    proc = sersyncpy(text)
    for i in range(100):
        write(src / f"d{i % 5}/f{i}", b"%d" % i)
    same_tree(src, daemon.modules["backup"], timeout=5)
    status_when(proc, lambda d: d["plugin"]["dropped"] >= 1, timeout=10,
                message="no notice dropped")
    # and it keeps replicating at full speed
    for i in range(20):
        write(src / f"later/f{i}", b"later %d" % i)
    same_tree(src, daemon.modules["backup"], timeout=5)


# --------------------------------------------------------------------------- 3. command

RECORDER_SCRIPT = """\
import json, os, sys
record = {{
    "argv": [os.fsencode(a).hex() for a in sys.argv],  # [0]: the script
    "event": os.environ.get("SERSYNCPY_EVENT"),
    "isdir": os.environ.get("SERSYNCPY_ISDIR"),
    "cwd": os.getcwd(),
}}
with open({log!r}, "a") as f:
    f.write(json.dumps(record) + "\\n")
if {exit_code}:
    print("boom: cannot purge", file=sys.stderr)
sys.exit({exit_code})
"""

# Each is one argument: none may run anything (sersync passed them to /bin/sh).
HOSTILE_PHP = [
    "a;touch PWNED_X;b.php",
    "$(touch PWNED_Y).php",
    "`touch PWNED_Z`.php",
    "with  two spaces.php",
    "-rf.php",
    "quote'd \"both\" | pipe > redirect.php",
    "ünïcödé 名字.php",
]
NOT_PHP = ["skip.txt", "php", "x.php.bak", "dir.phpx"]


def command_recorder(tmp_path: Path, exit_code: int = 0) -> tuple[Path, Path]:
    """(script, its log): the script appends its argv (hex), event and isdir as JSON."""
    log = tmp_path / "commands.jsonl"
    log.write_text("")
    script = tmp_path / "recorder script.py"  # a space: the prefix is split like a shell
    script.write_text(RECORDER_SCRIPT.format(log=str(log), exit_code=exit_code))
    return script, log


def command_runs(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def argv_of(run: dict) -> list[bytes]:
    return [bytes.fromhex(a) for a in run["argv"]]


def pwned_files(*roots: Path) -> list[str]:
    found = []
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            found += [os.path.join(dirpath, f) for f in files if f.startswith("PWNED")]
    for top in (Path("/"), Path.cwd()):
        found += [str(p) for p in top.glob("PWNED*")]
    return found


def test_sync_command_gets_the_path_as_one_argument_and_runs_no_shell(
        daemon, src, sersyncpy, tmp_path):
    script, log = command_recorder(tmp_path)
    prefix = [sys.executable, str(script), "--first", "two words"]
    section = command_section(prefix, "--last \"$HOME\" ';'", (r".*\.php",), False)
    text = with_plugin(confxml([(src, [(daemon, "backup")])]), "command", section)
    proc = sersyncpy(text)
    replica = daemon.modules["backup"]

    for name in NOT_PHP:
        write(src / name, b"not php")
    same_tree(src, replica)
    php = [os.fsencode(src / name) for name in HOSTILE_PHP]
    php.append(os.path.join(os.fsencode(src), b"caf\xe9 latin-1.php"))  # not UTF-8
    for path in php:
        with open(path, "wb") as f:
            f.write(b"<?php ?>")
    os.mkdir(src / "directory.php")
    php_dir = os.fsencode(src / "directory.php")
    same_tree(src, replica)

    def argv(path: bytes) -> list[bytes]:
        return [os.fsencode(str(script)), b"--first", b"two words", path, b"--last", b"$HOME",
                b";"]

    expected = sorted([[argv(p), "update", "0"] for p in php] + [[argv(php_dir), "update", "1"]])
    wait_until(lambda: len(command_runs(log)) >= len(expected), timeout=10)

    # A later change: its run comes next (notices go in order), and no other run between.
    os.unlink(php[0])
    wait_until(lambda: len(command_runs(log)) >= len(expected) + 1, timeout=10)
    *runs, last = command_runs(log)
    assert sorted([argv_of(r), r["event"], r["isdir"]] for r in runs) == expected
    assert {r["cwd"] for r in runs} == {str(proc.home)}
    assert [argv_of(last), last["event"], last["isdir"]] == [argv(php[0]), "delete", "0"]
    assert pwned_files(tmp_path, proc.home, src, replica) == []
    # Log text kept: the command plugin's failures are only logged (no status field
    # counts them), and none may have failed.
    assert " ERROR " not in proc.log()


@pytest.mark.parametrize("ignore_error", [False, True])
def test_sync_a_failing_command_is_logged_and_replication_goes_on(
        daemon, src, sersyncpy, tmp_path, ignore_error):
    script, log = command_recorder(tmp_path, exit_code=3)
    section = command_section([sys.executable, str(script)], "", (), ignore_error)
    text = with_plugin(confxml([(src, [(daemon, "backup")])]), "command", section)
    proc = sersyncpy(text)
    write(src / "first.html", b"1")
    os.mkdir(src / "more")
    wait_until(lambda: len(command_runs(log)) == 2, timeout=10)
    for i in range(10):
        write(src / f"more/f{i}", b"%d" % i)
    same_tree(src, daemon.modules["backup"], timeout=10)
    wait_until(lambda: len(command_runs(log)) == 12, timeout=10)  # and more/, its 10 files
    # Log text kept: a failing command's only trace is its ERROR line, with the command's
    # stderr (no status field counts command failures); with ignoreError, none.
    failed = re.compile(r" ERROR sersyncpy\.plugins\.command: command: .*first\.html.*: "
                        r"exit 3\n    boom: cannot purge\n")
    if ignore_error:
        # One more run: the commands run one after the other, each logged once it exited,
        # so the 12th's line would be in the log by now.
        write(src / "more/last", b"last")
        wait_until(lambda: len(command_runs(log)) == 13, timeout=10)
        assert " ERROR " not in proc.log()
    else:
        wait_until(lambda: failed.search(proc.log()), timeout=5)
        # the log line follows the command's exit: it may come just after the last record
        wait_until(lambda: proc.log().count(": exit 3\n    boom: cannot purge\n") == 12,
                   timeout=5)


def test_alone_command_include_filter_matches_a_name_with_a_newline(
        src, sersyncpy, tmp_path):
    script, log = command_recorder(tmp_path)
    section = command_section([sys.executable, str(script)], "", (r"(.*)\.php",), False)
    text = with_plugin(no_rsync_config(tmp_path, src), "command", section, start=False)
    start_alone(sersyncpy, text, "command")
    write(src / "new\nline.php", b"<?php ?>")
    write(src / "marker.php", b"<?php ?>")
    wait_until(lambda: any(argv_of(r)[-1].endswith(b"marker.php") for r in command_runs(log)),
               timeout=10)
    assert [argv_of(r)[-1] for r in command_runs(log)] == [
        os.fsencode(src / "new\nline.php"), os.fsencode(src / "marker.php")]


def test_alone_command_warns_at_start_that_a_shell_prefix_runs_each_changed_file(
        src, sersyncpy, tmp_path):
    # sersync 2.5's sample: prefix="/bin/sh" runs every uploaded file as root.
    section = command_section(["/bin/sh"], "", (), True)
    text = with_plugin(no_rsync_config(tmp_path, src), "command", section, start=False)
    proc = start_alone(sersyncpy, text, "command")
    warning = re.compile(r"WARNING sersyncpy\.plugins\.command: command: prefix=/bin/sh runs "
                         r"each changed file as a /bin/sh script: whoever can write in the "
                         r"watched tree runs code as ")
    # Log text kept: the WARNING, said once at the start, is the product.
    wait_until(lambda: warning.search(proc.log()), timeout=10)
    assert len(warning.findall(proc.log())) == 1


# --------------------------------------------------------------------------- 4, 5. -m socket


def test_alone_socket_watches_its_own_localpath_runs_no_rsync_and_sends_at_once(
        tmp_path, src, sersyncpy, servers, monkeypatch):
    # Sync mode would hold deletes this long: -m must not.
    monkeypatch.setenv("SERSYNCPY_DELETE_HOLD_SECONDS", "60")
    watch = tmp_path / "plugin-watch"
    watch.mkdir()
    rec = servers(TcpRecorder())
    trap = rsync_trap(servers)
    text = with_plugin(no_rsync_config(tmp_path, src, trap.port), "socket",
                       socket_section(watch, rec.port), start=False)
    start_alone(sersyncpy, text, "socket")
    expected: list[bytes] = []

    def arrive(*paths):
        expected.extend(os.fsencode(p) for p in paths)
        wait_until(lambda: rec.messages() == expected, timeout=5,
                   message=f"expected {expected}")

    write(src / "in-the-sersync-localpath", b"not watched by -m socket")
    write(watch / "f.txt", b"1")
    arrive(watch / "f.txt")
    os.mkdir(watch / "d")
    arrive(watch / "d")
    write(watch / "d/inner", b"2")
    arrive(watch / "d/inner")
    os.unlink(watch / "f.txt")
    arrive(watch / "f.txt")
    write(watch / "old", b"3")
    arrive(watch / "old")
    os.rename(watch / "old", watch / "new")
    arrive(watch / "old", watch / "new")
    os.rename(watch / "d", watch / "d2")
    arrive(watch / "d", watch / "d2", watch / "d2/inner")  # and what it holds (issue 13)
    shutil.rmtree(watch / "d2")
    arrive(watch / "d2/inner", watch / "d2")
    write(watch / "last", b"4")  # its notice comes next: none came between
    arrive(watch / "last")
    assert no_rsync_ran(trap)


def test_alone_socket_json_lines_and_reconnect_after_the_listener_restarts(
        tmp_path, src, sersyncpy, servers):
    watch = tmp_path / "plugin-watch"
    watch.mkdir()
    first = servers(TcpRecorder())
    trap = rsync_trap(servers)
    text = with_plugin(no_rsync_config(tmp_path, src, trap.port), "socket",
                       socket_section(watch, first.port, "json"), start=False)
    started = time.time()
    proc = start_alone(sersyncpy, text, "socket")
    latin1 = os.path.join(os.fsencode(watch), b"caf\xe9")
    write(watch / "a.txt", b"a")
    os.mkdir(watch / "dir")
    with open(latin1, "wb") as f:
        f.write(b"not UTF-8")
    os.unlink(watch / "a.txt")
    os.rename(watch / "dir", watch / "dir2")
    expected = [
        change("update", watch / "a.txt", False),
        change("update", watch / "dir", True),
        {"kind": "update", "path": f"{watch}/caf\ufffd", "is_dir": False,
         "path_b64": base64.b64encode(latin1).decode("ascii")},
        change("delete", watch / "a.txt", False),
        change("delete", watch / "dir", True),
        change("update", watch / "dir2", True),
    ]
    wait_until(lambda: len(json_lines(first.stream())) >= len(expected), timeout=5)
    lines = json_lines(first.stream())
    assert without_time(lines) == expected
    for line in lines:
        assert isinstance(line["time"], float) and started <= line["time"] <= time.time()
    assert len(first.connections) == 1  # one persistent connection

    port = first.port
    first.stop()
    write(watch / "while-down", b"x")
    # Log text kept: the plugin has met the stopped listener (-m writes no status file).
    wait_until(lambda: f"plugin socket: 127.0.0.1:{port}: Connection refused" in proc.log(),
               timeout=5)
    os.mkdir(watch / "dir-while-down")
    second = servers(TcpRecorder(port=port))
    write(watch / "after", b"y")
    expected = [
        change("update", watch / "while-down", False),
        change("update", watch / "dir-while-down", True),
        change("update", watch / "after", False),
    ]
    wait_until(lambda: without_time(json_lines(second.stream())) == expected, timeout=10)
    write(watch / "last", b"z")  # its line comes next: none came between
    expected.append(change("update", watch / "last", False))
    wait_until(lambda: without_time(json_lines(second.stream())) == expected, timeout=10)
    assert json_lines(first.stream()) == lines  # nothing more reached the stopped one
    assert no_rsync_ran(trap)


def test_alone_a_renamed_file_is_not_a_directory_to_the_plugins(
        tmp_path, src, sersyncpy, servers):
    watch = tmp_path / "plugin-watch"
    watch.mkdir()
    http = servers(HttpRecorder())
    text = with_plugin(no_rsync_config(tmp_path, src), "http", http_section(watch, http.port),
                       start=False)
    start_alone(sersyncpy, text, "http")
    write(watch / "old.html", b"x")
    wait_until(lambda: len(http.requests) == 1, timeout=5)
    os.rename(watch / "old.html", watch / "new.html")
    wait_until(lambda: len(http.requests) == 3, timeout=5)
    forms = [dict(parse_qsl(r.body.decode())) for r in http.requests[1:]]
    assert [(f["inotifyPath"], f["isdir"], int(f["mask"])) for f in forms] == [
        (str(watch / "old.html"), "0", IN_MOVED_FROM),
        (str(watch / "new.html"), "0", IN_MOVED_TO),
    ]


# --------------------------------------------------------------------------- 6, 7. refreshCDN


def cdn_query(kind: str, url: str, password: str = PASSWORD) -> str:
    return (f"user=cdnuser&pswd={quote(password, safe='')}&ok=ok&{kind}="
            f"{quote(url.encode(), safe=':/')}")


def requests_seen(http: HttpRecorder) -> list[tuple[str, str, str]]:
    return [(r.method, r.path, r.query) for r in list(http.requests)]


def test_alone_refreshcdn_requests_with_the_path_below_watch(tmp_path, src, sersyncpy, servers):
    site = tmp_path / "site"
    site.mkdir()
    http = servers(HttpRecorder())
    trap = rsync_trap(servers)
    # A trailing slash, as in sersync's sample: the URL must not get two.
    section = cdn_section(f"{site}/", http.port)
    text = with_plugin(no_rsync_config(tmp_path, src, trap.port), "refreshCDN", section,
                       start=False)
    proc = start_alone(sersyncpy, text, "refreshCDN")
    expected: list[tuple[str, str, str]] = []

    def refreshed(*pairs):
        expected.extend(("HEAD", "/index.jsp", cdn_query(kind, BASE + url)) for kind, url in pairs)
        wait_until(lambda: requests_seen(http) == expected, timeout=5,
                   message=f"expected {expected}")

    write(site / "a.jpg", b"a")
    refreshed(("urls", "/a.jpg"))
    os.mkdir(site / "img")
    refreshed(("dirs", "/img/"))
    write(site / "img/b c.jpg", b"b")
    refreshed(("urls", "/img/b c.jpg"))
    write(site / "ünï 名.png", b"u")
    refreshed(("urls", "/ünï 名.png"))
    write(site / "q&a=1#x?+%.jpg", b"q")
    refreshed(("urls", "/q&a=1#x?+%.jpg"))
    os.unlink(site / "a.jpg")
    refreshed(("urls", "/a.jpg"))
    shutil.rmtree(site / "img")
    refreshed(("urls", "/img/b c.jpg"), ("dirs", "/img/"))
    # spelled out once, so the encoding is not only checked against itself
    assert expected[3][2].endswith("&urls=http://pic.example.com/cms/%C3%BCn%C3%AF%20%E5%90%8D.png")
    assert expected[4][2].endswith("&urls=http://pic.example.com/cms/q%26a%3D1%23x%3F%2B%25.jpg")
    assert expected[1][2] == f"user=cdnuser&pswd={PASSWORD}&ok=ok&dirs=http://pic.example.com/cms/img/"
    write(site / "last.jpg", b"l")  # its request comes next: none came between
    refreshed(("urls", "/last.jpg"))
    assert no_rsync_ran(trap)
    # Log text kept: each request's reply is logged, as sersync did (its only trace).
    assert "refreshCDN: urls http://pic.example.com/cms/a.jpg: HTTP 200\n" in proc.log()


def test_alone_refreshcdn_regex_mapping_and_get(tmp_path, src, sersyncpy, servers):
    site = tmp_path / "site"
    (site / "jx3.example.com/images").mkdir(parents=True)
    (site / "other").mkdir()
    http = servers(HttpRecorder())
    # as sersync's sample: the group carries the slash, base + group + the rest after the match
    section = cdn_section(str(site), http.port, regex=True,
                         match=r"site(/[a-z0-9]+)\.example\.com/images", method="GET")
    text = with_plugin(no_rsync_config(tmp_path, src), "refreshCDN", section, start=False)
    start_alone(sersyncpy, text, "refreshCDN")
    write(site / "other/x.jpg", b"no match: no request")
    write(site / "jx3.example.com/images/a b.jpg", b"a")
    os.mkdir(site / "jx3.example.com/images/sub")
    expected = [
        ("GET", "/index.jsp", cdn_query("urls", f"{BASE}/jx3/a b.jpg")),
        ("GET", "/index.jsp", cdn_query("dirs", f"{BASE}/jx3/sub/")),
    ]
    wait_until(lambda: requests_seen(http) == expected, timeout=5)
    # A later change: its request comes next, so other/x.jpg asked for none.
    write(site / "jx3.example.com/images/last.jpg", b"l")
    expected.append(("GET", "/index.jsp", cdn_query("urls", f"{BASE}/jx3/last.jpg")))
    wait_until(lambda: requests_seen(http) == expected, timeout=5)


class Witnessed(list):
    """HttpRecorder.requests with, in .states, the replica's state as each request came."""

    def __init__(self, replica: Path):
        super().__init__()
        self.replica = replica
        self.states: list[dict] = []

    def append(self, request) -> None:
        self.states.append(tree_state(self.replica))
        super().append(request)


def test_sync_refreshcdn_asks_only_once_the_replica_has_the_change(daemon, src, sersyncpy,
                                                                    servers):
    replica = daemon.modules["backup"]
    http = servers(HttpRecorder())
    http.requests = seen = Witnessed(replica)
    text = with_plugin(confxml([(src, [(daemon, "backup")])]), "refreshCDN",
                       cdn_section(f"{src}/", http.port))
    sersyncpy(text)
    write(src / "a b.jpg", b"picture")
    wait_until(lambda: len(seen) == 1, timeout=10)
    os.mkdir(src / "album")
    wait_until(lambda: len(seen) == 2, timeout=10)
    os.unlink(src / "a b.jpg")
    wait_until(lambda: len(seen) == 3, timeout=10)
    assert requests_seen(http) == [
        ("HEAD", "/index.jsp", cdn_query("urls", f"{BASE}/a b.jpg")),
        ("HEAD", "/index.jsp", cdn_query("dirs", f"{BASE}/album/")),
        ("HEAD", "/index.jsp", cdn_query("urls", f"{BASE}/a b.jpg")),
    ]
    assert seen.states[0].get(b"a b.jpg") == b"picture"
    assert seen.states[1].get(b"album") == DIR
    assert b"a b.jpg" not in seen.states[2]
    same_tree(src, replica)


def test_alone_refreshcdn_outage_every_refresh_arrives_and_the_password_stays_secret(
        tmp_path, src, sersyncpy, servers):
    password = PASSWORD + "&+/ é%"  # also its percent-encoded spelling must stay out
    site = tmp_path / "site"
    site.mkdir()
    first = servers(HttpRecorder())
    port = first.port
    text = with_plugin(no_rsync_config(tmp_path, src), "refreshCDN",
                       cdn_section(str(site), port, password=password), start=False)
    proc = start_alone(sersyncpy, text, "refreshCDN", "--debug")
    write(site / "before.jpg", b"b")
    os.mkdir(site / "d")
    before = [
        ("HEAD", "/index.jsp", cdn_query("urls", f"{BASE}/before.jpg", password)),
        ("HEAD", "/index.jsp", cdn_query("dirs", f"{BASE}/d/", password)),
    ]
    wait_until(lambda: requests_seen(first) == before, timeout=5)

    first.stop()
    down_at = time.monotonic()
    write(site / "a.jpg", b"a")
    # Log text kept: the plugin has met the outage (-m writes no status file).
    wait_until(lambda: "plugin refreshCDN: " in proc.log() and "retrying in" in proc.log(),
               timeout=5)
    write(site / "d/b.jpg", b"b")
    os.unlink(site / "before.jpg")
    os.mkdir(site / "e")
    time.sleep(max(0.0, 10 - (time.monotonic() - down_at)))  # the outage lasts 10 s
    second = servers(HttpRecorder(port=port))
    write(site / "after.jpg", b"c")
    expected = [
        ("HEAD", "/index.jsp", cdn_query("urls", f"{BASE}/a.jpg", password)),
        ("HEAD", "/index.jsp", cdn_query("urls", f"{BASE}/d/b.jpg", password)),
        ("HEAD", "/index.jsp", cdn_query("urls", f"{BASE}/before.jpg", password)),
        ("HEAD", "/index.jsp", cdn_query("dirs", f"{BASE}/e/", password)),
        ("HEAD", "/index.jsp", cdn_query("urls", f"{BASE}/after.jpg", password)),
    ]
    # the last retry before it came back may be up to 5 s (the backoff's cap) away
    wait_until(lambda: requests_seen(second) == expected, timeout=10)
    write(site / "last.jpg", b"l")  # its request comes next: none came between
    expected.append(("HEAD", "/index.jsp", cdn_query("urls", f"{BASE}/last.jpg", password)))
    wait_until(lambda: requests_seen(second) == expected, timeout=10)
    assert requests_seen(first) == before

    log = proc.log()
    # Log text kept: the failures were logged, naming the API's address and path, never
    # its query; no spelling of the password is in any line.
    assert f"http://127.0.0.1:{port}/index.jsp: Connection refused" in log
    assert "pswd" not in log
    for spelling in {password, quote(password, safe=""), quote(password), quote_plus(password),
                     quote(password, safe="/"), PASSWORD}:
        assert spelling not in log, f"password spelled {spelling!r} in the log"


# --------------------------------------------------------------------------- 8. http


def form_of(request) -> list[tuple[str, bytes]]:
    """The form fields, values as the exact bytes (any path, UTF-8 or not)."""
    pairs = parse_qsl(request.body.decode("ascii"), keep_blank_values=True, strict_parsing=True,
                      encoding="utf-8", errors="surrogateescape")
    return [(k, os.fsencode(v)) for k, v in pairs]


def test_alone_http_form_one_post_per_change_with_exact_fields(tmp_path, src, sersyncpy,
                                                               servers):
    watch = tmp_path / "plugin-watch"
    watch.mkdir()
    http = servers(HttpRecorder())
    trap = rsync_trap(servers)
    text = with_plugin(no_rsync_config(tmp_path, src, trap.port), "http",
                       http_section(watch, http.port), start=False)
    start_alone(sersyncpy, text, "http")
    expected: list[list[tuple[str, bytes]]] = []

    def posted(*changes):
        for path, is_dir, mask in changes:
            expected.append([("watchroot", os.fsencode(watch)),
                             ("isdir", b"1" if is_dir else b"0"),
                             ("inotifyPath", os.fsencode(path)), ("mask", b"%d" % mask)])
        wait_until(lambda: [form_of(r) for r in list(http.requests)] == expected, timeout=5,
                   message=f"expected {expected}")

    write(watch / "f.txt", b"1")
    posted((watch / "f.txt", False, IN_CLOSE_WRITE))
    os.mkdir(watch / "d")
    posted((watch / "d", True, IN_CREATE | IN_ISDIR))
    odd = os.path.join(os.fsencode(watch), b"d", "sp ace&=+ é".encode() + b"\xff")
    with open(odd, "wb") as f:
        f.write(b"2")
    posted((odd, False, IN_CLOSE_WRITE))
    os.unlink(watch / "f.txt")
    posted((watch / "f.txt", False, IN_DELETE))
    os.rename(watch / "d", watch / "d2")
    # The renamed directory, then each file in it (issue 13, item 5).
    moved = os.path.join(os.fsencode(watch / "d2"), os.path.basename(odd))
    posted((watch / "d", True, IN_MOVED_FROM | IN_ISDIR), (watch / "d2", True,
                                                           IN_MOVED_TO | IN_ISDIR),
           (moved, False, IN_CLOSE_WRITE))
    shutil.rmtree(watch / "d2")
    posted((os.path.join(os.fsencode(watch / "d2"), os.path.basename(odd)), False, IN_DELETE),
           (watch / "d2", True, IN_DELETE | IN_ISDIR))
    write(watch / "last", b"3")  # its post comes next: none came between
    posted((watch / "last", False, IN_CLOSE_WRITE))
    for request in http.requests:
        assert (request.method, request.path) == ("POST", "/hook")
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert no_rsync_ran(trap)


def test_alone_http_json_one_post_carries_the_changes_waiting(tmp_path, src, sersyncpy,
                                                              servers):
    watch = tmp_path / "plugin-watch"
    watch.mkdir()
    http = servers(HttpRecorder(status=503))  # changes pile up while it refuses
    text = with_plugin(no_rsync_config(tmp_path, src), "http",
                       http_section(watch, http.port, "json"), start=False)
    start_alone(sersyncpy, text, "http")
    write(watch / "a", b"a")
    write(watch / "b", b"b")
    os.mkdir(watch / "c")
    os.unlink(watch / "a")
    expected = [
        {**change("update", watch / "a", False), "watchroot": str(watch), "mask": IN_CLOSE_WRITE},
        {**change("update", watch / "b", False), "watchroot": str(watch), "mask": IN_CLOSE_WRITE},
        {**change("update", watch / "c", True), "watchroot": str(watch),
         "mask": IN_CREATE | IN_ISDIR},
        {**change("delete", watch / "a", False), "watchroot": str(watch), "mask": IN_DELETE},
    ]

    def changes(request) -> list[dict]:
        return json.loads(request.body)["changes"]

    wait_until(lambda: any(len(changes(r)) == 4 for r in list(http.requests)), timeout=10)
    http.status = 200
    # Delivered: a post was answered 200.
    wait_until(lambda: 200 in http.statuses, timeout=10, message="no post answered 200")
    count = len(http.requests)
    last = http.requests[-1]
    assert (last.method, last.path, last.headers["Content-Type"]) == (
        "POST", "/hook", "application/json")
    assert without_time(changes(last)) == expected
    assert all(isinstance(c["time"], float) for c in changes(last))
    # A later change goes alone, in the next post: the four were not sent again.
    write(watch / "later", b"l")
    wait_until(lambda: len(http.requests) == count + 1, timeout=5)
    assert without_time(changes(http.requests[-1])) == [
        {**change("update", watch / "later", False), "watchroot": str(watch),
         "mask": IN_CLOSE_WRITE}]


def test_alone_http_form_retries_a_503_until_it_is_taken(tmp_path, src, sersyncpy, servers):
    watch = tmp_path / "plugin-watch"
    watch.mkdir()
    http = servers(HttpRecorder(status=503))
    text = with_plugin(no_rsync_config(tmp_path, src), "http", http_section(watch, http.port),
                       start=False)
    proc = start_alone(sersyncpy, text, "http")
    write(watch / "f", b"f")
    wait_until(lambda: len(http.requests) >= 3, timeout=10)  # refused, tried again, again
    # Log text kept: the WARNING naming the URL and its answer is why the admin reads.
    assert f"plugin http: http://127.0.0.1:{http.port}/hook: HTTP 503" in proc.log()
    http.status = 200
    wait_until(lambda: 200 in http.statuses, timeout=10, message="no post answered 200")
    # A later change: its post comes next, so f was not posted again once taken.
    count = len(http.requests)
    write(watch / "g", b"g")
    wait_until(lambda: len(http.requests) > count, timeout=5)
    want = [("watchroot", os.fsencode(watch)), ("isdir", b"0"),
            ("inotifyPath", os.fsencode(watch / "f")), ("mask", b"%d" % IN_CLOSE_WRITE)]
    g = [("watchroot", os.fsencode(watch)), ("isdir", b"0"),
         ("inotifyPath", os.fsencode(watch / "g")), ("mask", b"%d" % IN_CLOSE_WRITE)]
    assert [form_of(r) for r in http.requests] == [want] * count + [g]
    assert http.statuses.count(200) == 2  # f once, then g


def test_alone_http_url_token_and_password_stay_out_of_the_log_at_debug(tmp_path, src,
                                                                        sersyncpy, servers):
    watch = tmp_path / "plugin-watch"
    watch.mkdir()
    token, password = "tok-S3CRET-4711", "pw-S3CRET-0815"
    # refuses, quoting the request as some error pages do
    http = servers(HttpRecorder(status=403, reply=lambda r: f"no: {r.path}?{r.query}".encode()))
    url = f"http://hook:{password}@127.0.0.1:{http.port}/hook?site=img&token={token}"
    section = f"""    <plugin name="http">
        <localpath watch={quoteattr(str(watch))}>
            <deshost url={quoteattr(url)} format="form"/>
        </localpath>
    </plugin>"""
    text = with_plugin(no_rsync_config(tmp_path, src), "http", section, start=False)
    proc = start_alone(sersyncpy, text, "http", "--debug")
    # Log text kept in this test: what the log shows of the URL, and that no secret is in
    # it, is what it tests.
    write(watch / "refused", b"1")
    wait_until(lambda: "refused 1 change(s): HTTP 403" in proc.log(), timeout=5)
    http.status = 503
    write(watch / "retried", b"2")
    wait_until(lambda: "HTTP 503" in proc.log(), timeout=5)
    http.stop()  # and now nothing listens
    wait_until(lambda: "Connection refused" in proc.log(), timeout=15)

    sent = http.requests[0]
    assert sent.query == f"site=img&token={token}"  # they were used, and only there
    assert sent.headers["Authorization"] == "Basic " + base64.b64encode(
        f"hook:{password}".encode()).decode()
    log = proc.log()
    for secret in (token, password, quote(password), sent.headers["Authorization"][6:]):
        assert secret not in log, f"{secret!r} in the log"
    shown = f"http://127.0.0.1:{http.port}/hook"
    assert f"http: {shown} refused 1 change(s): HTTP 403 no: /hook?site=img&token=***" in log
    assert f"plugin http: {shown}: HTTP 503" in log
    assert f"plugin http: {shown}: Connection refused" in log


# --------------------------------------------------------------------------- 9. bad config


def bad_plugin_configs(tmp_path: Path, src: Path) -> dict[str, tuple[str, list[str], str, str]]:
    """name -> (config text, flags, the line's needle, what the message must say)."""
    base = no_rsync_config(tmp_path, src)
    bad_port = socket_section(tmp_path, 0).replace('port="0"', 'port="x"')
    missing = cdn_section(str(tmp_path / "no-such-dir"), 80)
    missing_watch = f'<localpath watch="{tmp_path}/no-such-dir"'
    return {
        "-m socket, port x": (with_plugin(base, "socket", bad_port, start=False),
                              ["-m", "socket"], '<deshost ip="127.0.0.1" port="x"',
                              '<deshost port="x">: not a port number'),
        "sync socket, port x": (with_plugin(base, "socket", bad_port), [],
                                '<deshost ip="127.0.0.1" port="x"',
                                '<deshost port="x">: not a port number'),
        "-m refreshCDN, no watch dir": (
            with_plugin(base, "refreshCDN", missing, start=False), ["-m", "refreshCDN"],
            missing_watch, f"{missing_watch}>: directory does not exist"),
    }


CASES = ["-m socket, port x", "sync socket, port x", "-m refreshCDN, no watch dir"]


def run_bad(tmp_path: Path, text: str, flags: list[str]):
    conf = tmp_path / "bad.xml"
    conf.write_text(text.replace("/tmp/rsync_fail_log.sh", str(tmp_path / "fail.sh")))
    result = subprocess.run([*SERSYNCPY, "-o", str(conf), *flags], capture_output=True,
                            text=True, timeout=30, cwd=tmp_path)
    return conf, result


@pytest.mark.parametrize("case", CASES)
def test_bad_plugin_settings_exit_2_naming_file_line_and_element(tmp_path, src, case):
    text, flags, needle, message = bad_plugin_configs(tmp_path, src)[case]
    conf, result = run_bad(tmp_path, text, flags)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr, result.stderr
    [line] = [n for n, text_line in enumerate(text.splitlines(), 1) if needle in text_line]
    assert result.stderr.splitlines()[-1].startswith(f"sersyncpy: {conf}:{line}: {message}"), \
        result.stderr


@pytest.mark.parametrize("case", CASES)
def test_bad_plugin_settings_are_one_line_on_stderr(tmp_path, src, case):
    text, flags, _needle, message = bad_plugin_configs(tmp_path, src)[case]
    _conf, result = run_bad(tmp_path, text, flags)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_unknown_plugin_for_dash_m_is_one_line(tmp_path, src):
    _conf, result = run_bad(tmp_path, no_rsync_config(tmp_path, src), ["-m", "nosuch"])
    assert result.returncode == 2, result
    assert result.stderr.splitlines() == [
        "sersyncpy: -m nosuch: unknown plugin, expected one of command, socket, refreshCDN, "
        "http"]


# --------------------------------------------------------------------------- issue 13, item 5


def staged_app(tmp_path: Path) -> Path:
    """A deploy's staging copy, outside the watched tree: moved in whole with `mv`."""
    app = tmp_path / "staging" / "app"
    write(app / "index.php", b"<?php echo 1;")
    write(app / "lib" / "util.php", b"<?php")
    write(app / "style.css", b"body {}")
    return app


def test_sync_command_runs_for_each_php_file_of_a_directory_moved_in(
        daemon, src, sersyncpy, tmp_path):
    script, log = command_recorder(tmp_path)
    section = command_section([sys.executable, str(script)], "", (r"(.*)\.php",), False)
    sersyncpy(with_plugin(confxml([(src, [(daemon, "backup")])]), "command", section))
    staged_app(tmp_path).rename(src / "app")  # the usual deploy
    same_tree(src, daemon.modules["backup"])
    expected = [os.fsencode(src / "app/index.php"), os.fsencode(src / "app/lib/util.php")]
    wait_until(lambda: len(command_runs(log)) >= 2, timeout=10,
               message="the command did not run for the .php files inside app/")
    write(src / "last.php", b"<?php")  # its run comes next: none came between
    wait_until(lambda: len(command_runs(log)) >= 3, timeout=10)
    *runs, last = command_runs(log)
    assert sorted(argv_of(r)[-1] for r in runs) == expected
    assert argv_of(last)[-1] == os.fsencode(src / "last.php")


def test_alone_socket_hears_of_each_file_of_a_directory_moved_in(
        tmp_path, src, sersyncpy, servers):
    rec = servers(TcpRecorder())
    text = with_plugin(no_rsync_config(tmp_path, src), "socket", socket_section(src, rec.port),
                       start=False)
    start_alone(sersyncpy, text, "socket")
    staged_app(tmp_path).rename(src / "app")
    expected = sorted(os.fsencode(src / rel) for rel in (
        "app", "app/index.php", "app/lib", "app/lib/util.php", "app/style.css"))
    wait_until(lambda: sorted(c.data for c in rec.connections if c.closed) == expected,
               timeout=10)
