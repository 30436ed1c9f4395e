"""ssh mode against a real sshd: rsync runs `-e COMMAND` (<ssh command>) to a remote directory.

The sshd (Debian's openssh-server) runs in a network namespace made by `netns_host`, on a
non-standard port, with its own host key and an authorized_keys file in tmp_path. ssh is
given everything on its command line (-F /dev/null, a known_hosts file in tmp_path,
BatchMode, StrictHostKeyChecking=yes), so nothing prompts and nothing is written to ~/.ssh.

Its ForceCommand records every command line a client asks for, then runs it with `sh -c`,
as sshd does through the login shell, in a directory of the test's. After each test every
recorded line is checked for anything unescaped (`unescaped`). Every test runs twice: as is,
and with RSYNC_OLD_ARGS=1 in sersyncpy's environment, which makes rsync put names on that
line unescaped, as rsync up to 3.2.3 always does (issue 12).
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import string
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

import pytest
from conftest import child_processes, free_port, stop_process, wait_until

from integration.conftest import confxml, same_tree, status_when, write
from sersyncpy import probe, rsync

SSHD = "/usr/sbin/sshd"
RENAME_FILES = 500
RENAME_FILE_SIZE = 4096
RENAME_MAX_SHARE = 0.05  # bytes sent for the rename, as a share of the directory's size

pytestmark = pytest.mark.skipif(not os.access(SSHD, os.X_OK),
                                reason="openssh-server is not installed (scripts/setup)")

# The sshd's ForceCommand. sshd itself would run the client's command line with the login
# shell's -c in the user's home; this does the same with /bin/sh, in a directory of the
# test's, so a command slipped into the line leaves its files where the test looks.
RECORDER = """\
import os
import sys

records, cwd = sys.argv[1], sys.argv[2]
command = os.environb.get(b"SSH_ORIGINAL_COMMAND")
if command is None:
    sys.exit("recorder: no command line; this sshd runs commands only")
# An environment variable cannot hold NUL, so NUL ends a record unambiguously; one write with
# O_APPEND keeps the records of connections side by side apart.
fd = os.open(records, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
try:
    os.write(fd, command + b"\\0")
finally:
    os.close(fd)
os.chdir(cwd)
os.execv("/bin/sh", ["sh", "-c", command])
"""

# What a remote command line may hold. With -s rsync's line is its own words and option
# letters only ("rsync --server -slogDtpre.iLsfxCIvu"); a name, escaped (3.2.4 and later: "d\;x")
# or not (up to 3.2.3, or RSYNC_OLD_ARGS=1), brings a byte outside this set or a component
# that test_a_directory_name_never_runs_as_a_command_on_the_backup looks for.
COMMAND_LINE_BYTES = frozenset((string.ascii_letters + string.digits + "._+,@%=-/ ").encode())
PWNED = "PWNED"  # what the injected commands create


def unescaped(line: bytes, names: Iterable[bytes]) -> list[str]:
    """What in one remote command line does not belong there: bytes outside
    COMMAND_LINE_BYTES, and any of `names` (file names from the tree) as a word or a path
    component, or anywhere when the name holds a space."""
    problems = []
    stray = bytes(sorted(set(line) - COMMAND_LINE_BYTES))
    if stray:
        problems.append(f"bytes {stray!r}")
    parts = set(line.replace(b"=", b" ").replace(b"/", b" ").split(b" "))
    problems += [f"the name {name!r}" for name in sorted(names)
                 if name in parts or (b" " in name and name in line)]
    return problems


def tree_names(root: Path) -> set[bytes]:
    """Every name in the tree under `root` (not following symlinks), as bytes."""
    names = set()
    for _, dirs, files in os.walk(os.fsencode(root)):
        names.update(dirs, files)
    return names


def assert_command_lines_clean(lines: list[bytes], names: Iterable[bytes]) -> None:
    names = set(names)
    bad = {line: problems for line in lines if (problems := unescaped(line, names))}
    assert not bad, "remote command lines carry names or unescaped bytes:\n" + "\n".join(
        f"  {line!r}: {', '.join(problems)}" for line, problems in bad.items())


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name,
                    "-f", str(path)], check=True, stdin=subprocess.DEVNULL,
                   capture_output=True, timeout=30)
    return path


def _accepts(ip: str, port: int) -> bool:
    try:
        socket.create_connection((ip, port), timeout=0.5).close()
    except OSError:
        return False
    return True


class Sshd:
    """One sshd in a namespace, and the client side: a key it accepts, one it does not,
    and a known_hosts file holding its host key. It runs every command line through RECORDER:
    `command_lines()` lists them; they run in `shell_dir`."""

    def __init__(self, home: Path, host) -> None:
        self.home, self.host = home, host
        self.ip, self.port = host.ip, free_port()
        self.host_key = _keygen(home / "host_key")
        self.key = _keygen(home / "client_key")
        self.wrong_key = _keygen(home / "wrong_key")  # never in authorized_keys
        self.authorized_keys = home / "authorized_keys"
        self.authorized_keys.write_text((home / "client_key.pub").read_text())
        self.known_hosts = home / "known_hosts"
        key_type, key_data = (home / "host_key.pub").read_text().split()[:2]
        self.known_hosts.write_text(f"[{self.ip}]:{self.port} {key_type} {key_data}\n")
        self.recorder = home / "recorder.py"
        self.recorder.write_text(RECORDER)
        self.records = home / "command_lines"
        self.shell_dir = home / "shell"  # the remote shell's working directory
        self.shell_dir.mkdir()
        self.config = home / "sshd_config"
        self.config.write_text("\n".join([
            f"ListenAddress {self.ip}",
            f"Port {self.port}",
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            f"PidFile {home / 'sshd.pid'}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "StrictModes no",
            "UsePAM no",
            "LogLevel VERBOSE",
            "ForceCommand " + shlex.join([sys.executable, "-I", "-S", str(self.recorder),
                                          str(self.records), str(self.shell_dir)]),
            "",
        ]))
        self.log_path = home / "sshd.log"
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> Sshd:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.host.exec_argv(SSHD, "-D", "-e", "-f", str(self.config)),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        wait_until(lambda: self.proc.poll() is not None or _accepts(self.ip, self.port),
                   timeout=15, message="sshd did not listen")
        assert self.proc.poll() is None, f"sshd exited:\n{self.log()}"
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def command_lines(self) -> list[bytes]:
        """Every command line asked for so far, in order (sshd restarts included)."""
        try:
            return self.records.read_bytes().split(b"\0")[:-1]
        except FileNotFoundError:
            return []

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def command(self, key: Optional[Path] = None) -> str:
        """The <ssh command>: rsync splits it on spaces (tmp_path has none)."""
        return " ".join([
            "ssh", "-F", "/dev/null", "-i", str(key or self.key), "-p", str(self.port),
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
        ])

    def ssh_argv(self, *remote: str) -> list[str]:
        return [*self.command().split(), self.ip, *remote]


@pytest.fixture(params=[{}, {"RSYNC_OLD_ARGS": "1"}], ids=["default", "RSYNC_OLD_ARGS=1"])
def sersyncpy_env(request) -> dict[str, str]:
    """Added to sersyncpy's environment. RSYNC_OLD_ARGS=1 stands in for an rsync up to
    3.2.3: names on the remote command line unescaped, unless sersyncpy prevents it."""
    return request.param


@pytest.fixture
def sshd(netns_host, tmp_path_factory, src, sersyncpy_env):
    """A started Sshd in its own namespace; stopped by its PID before the namespace goes.
    Afterwards no command line it ran carries a name from `src` or an unescaped byte, and
    its shell left nothing behind. Every test here uses it, so each runs in both
    sersyncpy_env."""
    host = netns_host()
    server = Sshd(tmp_path_factory.mktemp("sshd"), host)
    try:
        yield server.start()
    finally:
        server.stop()
    assert_command_lines_clean(server.command_lines(), tree_names(src))
    assert not os.listdir(server.shell_dir), os.listdir(server.shell_dir)


@pytest.fixture
def sersyncpy(sersyncpy, sshd, sersyncpy_env):
    """The integration fixture with sersyncpy_env in the process's environment. It needs
    sshd, so it stops before sshd's check of the command lines."""

    def factory(config_text: str, *flags: str, wait: bool = True):
        proc = sersyncpy(config_text, *flags, wait=wait, env=sersyncpy_env)
        environ = Path(f"/proc/{proc.proc.pid}/environ").read_bytes().split(b"\0")
        for name, value in sersyncpy_env.items():
            assert f"{name}={value}".encode() in environ
        return proc

    return factory


class _Remote:
    """What confxml() wants of a remote; in ssh mode the port comes from the ssh command."""

    user = ""
    password_file = None

    def __init__(self, address: str, port: int) -> None:
        self.address, self.port = address, port


def ssh_confxml(src: Path, sshd: Sshd, remote_dir: Path, key: Optional[Path] = None,
                **kwargs) -> str:
    text = confxml([(src, [(_Remote(sshd.ip, sshd.port), str(remote_dir))])], **kwargs)
    # A remote's port is the daemon's; over ssh it is -p in the command, so leave it out.
    text = text.replace(f' port="{sshd.port}"/>', "/>")
    auth = [line for line in text.splitlines() if "<auth " in line]
    assert len(auth) == 1
    text = text.replace(auth[0].strip(), '<auth start="false" users="" passwordfile=""/>')
    ssh_on = f'<ssh start="true" command="{sshd.command(key)}"/>'
    assert '<ssh start="false"/>' in text
    return text.replace('<ssh start="false"/>', ssh_on)


def settled_remote(proc, after: float) -> dict:
    """The remote's status entry once two status files written after `after` agree on the
    bytes sent, with nothing pending: every push made before `after` is counted."""
    seen: list[tuple[float, int]] = []

    def settled() -> Optional[dict]:
        doc = proc.status()
        if doc is None or doc["updated"] <= after:
            return None
        remote = doc["remotes"][0]
        if remote["pending"]:
            seen.clear()
            return None
        if not seen or seen[-1][0] != doc["updated"]:
            seen.append((doc["updated"], remote["bytes_sent"]))
        if len(seen) >= 2 and seen[-1][1] == seen[-2][1]:
            return remote
        return None

    return wait_until(settled, timeout=20, interval=0.2, message="status did not settle")


def _remote_dir(tmp_path_factory) -> Path:
    # Outside tmp_path and outside src: the remote end is the same file system here.
    path = tmp_path_factory.mktemp("remote") / "replica"
    path.mkdir()
    return path


def test_sshd_fixture_runs_commands_in_its_namespace(sshd):
    result = subprocess.run(sshd.ssh_argv("rsync", "--version"), capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert result.returncode == 0, f"{result.stderr}\nsshd log:\n{sshd.log()}"
    assert result.stdout.startswith("rsync ")
    assert f"Accepted publickey for root from {sshd.host.host_ip}" in sshd.log()
    # Where an injected command writes: the shell's directory, not the home directory.
    subprocess.run(sshd.ssh_argv("touch", PWNED), check=True, capture_output=True,
                   stdin=subprocess.DEVNULL, timeout=30)
    assert os.listdir(sshd.shell_dir) == [PWNED]
    (sshd.shell_dir / PWNED).unlink()
    assert sshd.command_lines() == [b"rsync --version", b"touch " + PWNED.encode()]


@pytest.mark.parametrize("line, clean", [
    (b"rsync --server -slogDtprIRe.iLsfxCIvu", True),  # -s: everything else in the protocol
    (b"rsync --server -logDtpre.iLsfxCIvu --timeout=20 --delete --stats --link-dest ../d "
     b"--mkpath . /srv/replica/moved/", False),  # no -s: names, even harmless ones
    (b"rsync --server -logDtpre.iLsfxCIvu . /srv/replica/d\\;touch\\ PWNED\\;/",
     False),  # rsync >= 3.2.4 escapes
    (b"rsync --server -logDtpre.iLsfxCIvu . /srv/replica/d;touch PWNED;/", False),
    (b"rsync --server -logDtpre.iLsfxCIvu . /srv/replica/with space/", False),
])
def test_the_command_line_check_sees_names_and_unescaped_bytes(line, clean):
    names = {b"d", b"moved", b"with space", b"d;touch PWNED;"}
    assert (not unescaped(line, names)) is clean


def test_live_replication_over_ssh(sshd, sersyncpy, src, tmp_path_factory):
    remote_dir = _remote_dir(tmp_path_factory)
    proc = sersyncpy(ssh_confxml(src, sshd, remote_dir))

    names = ["with space", "-leading dash", "non-ASCII ÿ é 日本", "new\nline"]
    for index, name in enumerate(names):
        write(src / name, f"file {index}\n".encode())
    write(src / "tree/a/b/c/deep", b"deep")
    write(src / "tree/a/other", b"other")
    os.symlink("tree/a/other", src / "link")
    same_tree(src, remote_dir)

    (src / "with space").unlink()
    (src / "tree/a/other").write_bytes(b"rewritten")
    same_tree(src, remote_dir)
    (remote,) = status_when(proc, lambda d: d["remotes"][0]["pending"] == 0)["remotes"]
    assert remote["remote"] == f"{sshd.ip}:{remote_dir}"  # the lane's label: host:directory
    # Log text kept here and below: no status field counts every failed rsync (a failed
    # start-up resync, or a rename sent again as a copy, is in none).
    assert " failed" not in proc.log(), proc.log()
    assert "Accepted publickey" in sshd.log()


def test_rename_of_a_directory_does_not_resend_its_data(sshd, sersyncpy, src,
                                                        tmp_path_factory, record_property):
    remote_dir = _remote_dir(tmp_path_factory)
    proc = sersyncpy(ssh_confxml(src, sshd, remote_dir))
    for index in range(RENAME_FILES):
        write(src / "big" / f"f{index:04d}", os.urandom(RENAME_FILE_SIZE))
    same_tree(src, remote_dir, timeout=30)
    before = settled_remote(proc, time.time())["bytes_sent"]
    size = RENAME_FILES * RENAME_FILE_SIZE
    assert before >= size  # the first push did send the data

    (src / "big").rename(src / "moved")
    same_tree(src, remote_dir, timeout=30)
    after = settled_remote(proc, time.time())["bytes_sent"]
    sent = after - before
    record_property("rename_bytes_sent", sent)
    record_property("renamed_directory_bytes", size)
    print(f"rename of {RENAME_FILES} x {RENAME_FILE_SIZE} B = {size} B: {sent} B sent "
          f"({100 * sent / size:.2f} %)")
    assert sent < RENAME_MAX_SHARE * size, (
        f"the rename sent {sent} bytes for a {size}-byte directory\n{proc.log()}")
    # Log text kept: only the per-call INFO line says the rename went as one (no status
    # field counts the calls of each kind).
    assert f"{sshd.ip}:{remote_dir}: rename of 1 paths, exit 0" in proc.log(), proc.log()
    assert " failed" not in proc.log(), proc.log()
    assert_command_lines_clean(sshd.command_lines(), {b"big", *tree_names(src)})


def test_wrong_key_fails_and_retries_then_a_reload_with_the_right_key_loses_nothing(
    sshd, sersyncpy, src, tmp_path_factory
):
    remote_dir = _remote_dir(tmp_path_factory)
    proc = sersyncpy(ssh_confxml(src, sshd, remote_dir, key=sshd.wrong_key))
    write(src / "first", b"written while the key is wrong")
    write(src / "dir/second", b"also")
    # ssh fails (Permission denied), rsync exits 255: the lane keeps the paths and retries.
    doc = status_when(proc, lambda d: d["remotes"][0]["consecutive_failures"] >= 2,
                      timeout=20, message="no retried failure")
    failing = doc["remotes"][0]
    assert failing["last_error"].startswith("exit "), failing
    assert failing["pending"] >= 2 and failing["last_success"] is None, failing
    # Log text kept: ssh's own words, quoted in the failure line, are why the admin reads.
    log = proc.log()
    assert "Permission denied (publickey)" in log, log
    assert not (remote_dir / "first").exists()

    proc.config.write_text(proc.config.read_text().replace(str(sshd.wrong_key), str(sshd.key)))
    proc.proc.send_signal(signal.SIGHUP)
    # Applied: with the right key the pending paths go, and the lane is current again.
    status_when(proc, lambda d: d["remotes"][0]["last_success"] is not None
                and d["remotes"][0]["consecutive_failures"] == 0, timeout=40,
                message="no push with the reloaded key")
    write(src / "third", b"after the reload")
    same_tree(src, remote_dir, timeout=40)


def test_reachable_probes_the_port_of_the_ssh_command(sshd):
    target = rsync.Target(ip=sshd.ip, module="/srv/replica", ssh=True, rsh=sshd.command())
    assert probe.reachable(target)


def test_after_an_sshd_outage_the_lane_catches_up_within_seconds(
    sshd, sersyncpy, src, tmp_path_factory
):
    remote_dir = _remote_dir(tmp_path_factory)
    proc = sersyncpy(ssh_confxml(src, sshd, remote_dir))
    write(src / "first", b"before the outage")
    same_tree(src, remote_dir)
    sshd.stop()
    write(src / "second", b"during the outage")
    # Four failures: the next wait is 8 s (+-20 %), long enough to tell a probe from none
    # (the status file, rewritten every 2 s, may show the fourth up to 2 s late).
    status_when(proc, lambda d: d["remotes"][0]["consecutive_failures"] >= 4, timeout=30,
                message="the lane did not keep retrying")
    # Log text kept: ssh's own words, which rsync's exit code (255 or 12, whichever it
    # notices first, ssh's exit or the closed pipe; both seen, with and without -s) lacks.
    assert f"ssh: connect to host {sshd.ip} port {sshd.port}: Connection refused" in proc.log()
    sshd.start()  # the same port: the remote is back
    back = time.monotonic()
    same_tree(src, remote_dir, timeout=20)
    caught_up = time.monotonic() - back
    assert caught_up < 3.0, f"caught up {caught_up:.1f} s after sshd came back\n{proc.log()}"


def _rsync_running(proc) -> bool:
    return any(child.cmdline[:1] == ["rsync"] for child in child_processes(proc.proc.pid))


@pytest.mark.parametrize("evil", ["d;touch PWNED;", "d$(touch PWNED)", "d`touch PWNED`"],
                         ids=["semicolon", "dollar-paren", "backquote"])
def test_a_directory_name_never_runs_as_a_command_on_the_backup(
    evil, sshd, sersyncpy, src, tmp_path_factory
):
    remote_dir = _remote_dir(tmp_path_factory)
    proc = sersyncpy(ssh_confxml(src, sshd, remote_dir))
    write(src / "d/f", b"x\n")
    same_tree(src, remote_dir)
    # Wherever the remote shell could have run `touch PWNED`.
    places = [sshd.shell_dir, remote_dir.parent, Path(os.path.expanduser("~root"))]
    # A rename sends the new name as the destination and the old one in --link-dest.
    for old, new in (("d", evil), (evil, "e")):
        (src / old).rename(src / new)
        # rsync waits for ssh, and ssh for the remote shell: once the pushes that brought the
        # rename to the backup have ended, so has whatever the shell was made to run.
        wait_until(lambda old=old, new=new: (remote_dir / new).is_dir()
                   and not (remote_dir / old).exists() and not _rsync_running(proc),
                   timeout=20, message=f"no push of {old!r} renamed to {new!r}")
        pwned = [str(place / PWNED) for place in places if (place / PWNED).exists()]
        assert not pwned, f"renaming {old!r} to {new!r} ran a command on the backup: {pwned}"
        same_tree(src, remote_dir)
    lines = sshd.command_lines()
    assert any(line.startswith(b"rsync --server ") for line in lines), lines
    assert_command_lines_clean(lines, {b"d", b"f", b"e", evil.encode()})
    assert " failed" not in proc.log(), proc.log()  # kept: see test_live_replication_over_ssh


def test_ssh_with_auth_on_replicates_without_the_password_file(
        sshd, sersyncpy, src, tmp_path_factory):
    # sersync passed --password-file over ssh and every transfer failed; sersyncpy 0.1
    # required the file though it never used it. Now: not required, not used, said once.
    remote_dir = _remote_dir(tmp_path_factory)
    text = ssh_confxml(src, sshd, remote_dir).replace(
        '<auth start="false" users="" passwordfile=""/>',
        '<auth start="true" users="root" passwordfile="/nonexistent/rsync.pas"/>')
    proc = sersyncpy(text)
    write(src / "f.txt", b"over ssh, as root@")
    same_tree(src, remote_dir)
    # Log text kept: the WARNING, said once, is the product; and no rsync failed (as above).
    assert proc.log().count('<auth start="true"> is not used in ssh mode') == 1
    assert " failed" not in proc.log(), proc.log()
