"""rsync argv building and exit-code classes: pure functions, table tests."""

from dataclasses import replace

import pytest

from sersyncpy import rsync, rsyncrun

DAEMON = rsync.Target(ip="127.0.0.1", module="backup", port=8730, user="sersync",
                      password_file="/etc/rsync.pas", timeout=100, common_params=("-artuz",))



def DAEMON_RENAMES(src: str, dst: str) -> bool:  # noqa: N802 - a constant-like predicate
    return rsync.renamable(DAEMON, src, dst)


def test_base_argv_carries_sersyncs_options_in_order():
    assert rsync.base_argv(DAEMON) == [
        "rsync", "-artuz", "--sockopts=TCP_NODELAY", "--contimeout=10", "--port=8730",
        "--password-file=/etc/rsync.pas", "--timeout=100", "--stats",
    ]


def test_a_hung_connection_is_always_cut():
    argv = rsync.base_argv(rsync.Target(ip="h", module="m"))
    assert "--contimeout=10" in argv and "--timeout=60" in argv


def test_ssh_mode_uses_remote_shell_and_single_colon():
    t = rsync.Target(ip="198.18.0.2", module="/srv/www", ssh=True, user="root")
    assert rsync.base_argv(t) == ["rsync", "-artuz", "-s", "-e", "ssh", "--timeout=60",
                                  "--stats"]
    assert t.destination() == "root@198.18.0.2:/srv/www/"
    assert t.destination("a b") == "root@198.18.0.2:/srv/www/a b/"


@pytest.mark.parametrize("target, expected", [
    (DAEMON, "sersync@127.0.0.1::backup/"),
    (rsync.Target(ip="10.9.9.9", module="m"), "10.9.9.9::m/"),
])
def test_destination(target, expected):
    assert target.destination() == expected


def test_listed_call_reads_nul_separated_paths_and_deletes_missing_ones():
    argv = rsync.listed_argv(replace(DAEMON, common_params=("-artz",)))
    for option in ("-r", "-I", "--from0", "--files-from=-", "--delete-missing-args", "--force",
                   "--delete"):
        assert option in argv
    assert argv[-3:] == ["--", ".", "sersync@127.0.0.1::backup/"]
    assert "-I" in rsync.listed_argv(DAEMON)  # a one-way replica, even with sersync's -u
    assert "-c" in rsync.listed_argv(replace(DAEMON, full_deletes=False))  # a merging peer
    # Merging peers (inFullSync="false"): nothing deleted inside a listed directory.
    merge = rsync.listed_argv(replace(DAEMON, full_deletes=False))
    assert "--delete" not in merge and "--delete-missing-args" in merge
    assert "--delete" not in rsync.rename_argv(replace(DAEMON, full_deletes=False), "a", "b")
    assert "--delete" in rsync.rename_argv(DAEMON, "a", "b")


def test_no_deletes_when_delete_events_are_off():
    t = rsync.Target(ip="h", module="m", deletes=False)
    argv = rsync.listed_argv(t)
    assert "--ignore-missing-args" in argv
    assert not {"--delete", "--delete-missing-args"} & set(argv)
    assert "--delete" not in rsync.full_argv(t)


def test_directory_metadata_call_does_not_recurse():
    argv = rsync.dirs_argv(DAEMON)
    assert "--no-r" in argv and "-d" in argv and "-I" not in argv


@pytest.mark.parametrize("src, dst, expected", [
    ("old", "new", "../old"),
    ("p/old", "q/new", "../../p/old"),
    ("a", "x/y/z", "../../../a"),
])
def test_link_dest_is_relative_to_the_destination_directory(src, dst, expected):
    assert rsync.link_dest_for(src, dst) == expected


def test_rename_call_links_against_the_old_name():
    argv = rsync.rename_argv(DAEMON, "p/old", "-q/new")
    assert "--link-dest=../../p/old" in argv and "--mkpath" in argv
    assert argv[-3:] == ["--", "./-q/new/", "sersync@127.0.0.1::backup/-q/new/"]


def test_full_call_lists_directories_on_stdin_with_the_crontab_excludes():
    t = rsync.Target(ip="h", module="m", full_excludes=("*.php", "info/*"))
    argv = rsync.full_argv(t)
    assert argv[-5:] == ["--exclude=*.php", "--exclude=info/*", "--", ".", "h::m/"]
    assert "--files-from=-" in argv and "-I" not in argv and "--delete" in argv


@pytest.mark.parametrize("rel, safe", [
    ("plain/dir", True), ("sp ace", True), ("back\\slash", True), ("wild-*", False),
    ("one?", False), ("[x]", False),
])
def test_names_with_wildcards_never_go_into_a_destination_argument(rel, safe):
    assert rsync.safe_in_destination(rel) is safe


SSH = rsync.Target(ip="198.18.0.2", module="/srv/www", ssh=True)


@pytest.mark.parametrize("src, dst, over_ssh, over_daemon", [
    ("old", "new", True, True),
    ("a/b-1.2_x+y,z@h%20=", "c/d", True, True),
    ("old", "d;id>PWNED;", False, True),  # a shell would run id on the backup
    ("d;id>PWNED;", "new", False, True),  # the old name goes into --link-dest
    ("old", "sp ace", False, True),
    ("old", "$(id)", False, True),
    ("old", "`id`", False, True),
    ("old", "new\nline", False, True),
    ("old", "non-ASCII é", False, True),
    ("old", "wild*", False, False),  # the daemon would expand it
    ("old", "~root", False, True),
    ("old", "a/../b", False, True),
])
def test_a_rename_puts_only_conservative_names_on_an_ssh_command_line(
        src, dst, over_ssh, over_daemon):
    assert rsync.renamable(SSH, src, dst) is over_ssh
    assert rsync.renamable(DAEMON, src, dst) is over_daemon
    if not over_ssh:
        with pytest.raises(ValueError):
            rsync.rename_argv(SSH, src, dst)


def test_rsync_never_inherits_the_variables_that_unprotect_its_arguments(monkeypatch):
    monkeypatch.setenv("RSYNC_OLD_ARGS", "1")
    monkeypatch.setenv("RSYNC_PROTECT_ARGS", "0")
    monkeypatch.setenv("SERSYNCPY_KEPT", "yes")
    env = rsyncrun.environment()
    assert "RSYNC_OLD_ARGS" not in env and "RSYNC_PROTECT_ARGS" not in env
    assert env["SERSYNCPY_KEPT"] == "yes"


@pytest.mark.parametrize("bad", ["../secret", "a/../../etc", "/etc/shadow", "a//b", "./a",
                                 "a/.", "nul\0byte", "a/"])
def test_no_path_outside_the_root_is_ever_listed_for_rsync(bad):
    with pytest.raises(ValueError):
        rsync.encode_list(["fine", bad])


def test_crontabfilter_patterns_apply_to_full_syncs_only():
    # sersyncpy 0.1 added them to every live push whenever <filter> was on (issue 13 item 2).
    t = rsync.Target(ip="h", module="m", full_excludes=("*.php",))
    assert "--exclude=*.php" in rsync.full_argv(t)
    for argv in (rsync.listed_argv(t), rsync.rename_argv(t, "a", "b"), rsync.dirs_argv(t)):
        assert not [a for a in argv if a.startswith("--exclude")], argv


def test_the_filter_regexes_reach_rsync_as_an_exclude_file_read_nul_separated():
    t = rsync.Target(ip="h", module="m")
    for argv in (rsync.listed_argv(t, "/x"), rsync.rename_argv(t, "a", "b", "/x"),
                 rsync.full_argv(t, "/x")):
        assert "--exclude-from=/x" in argv and "--from0" in argv


def test_encode_list_is_nul_separated_dot_slash_paths_with_root_as_dot():
    # ./ so that a name starting with # or ; is not taken for a comment by rsync
    assert rsync.encode_list(["a b", "new\nline", "", "bad\udcff", "#x"]) == (
        b"./a b\0./new\nline\0.\0./bad\xff\0./#x\0")


OK, FATAL, RETRY = rsync.Outcome.OK, rsync.Outcome.FATAL, rsync.Outcome.RETRY


@pytest.mark.parametrize("code, kind", [
    (0, OK), (24, OK), (23, RETRY), (10, RETRY), (5, RETRY), (30, RETRY),
    (35, RETRY), (1, FATAL), (2, FATAL), (-9, RETRY),
])
def test_exit_code_classes(code, kind):
    assert rsync.classify(code) is kind
    assert rsync.describe_exit(code)


def test_parse_stats_reads_files_and_bytes_sent():
    out = (b"\nNumber of files: 7 (reg: 5, dir: 2)\nNumber of created files: 5\n"
           b"Number of regular files transferred: 5\nTotal file size: 1,234,567 bytes\n"
           b"Total bytes sent: 12,345\nTotal bytes received: 120\n")
    assert rsyncrun.parse_stats(out) == (5, 12345)
    assert rsyncrun.parse_stats(b"") == (0, 0)
    assert rsyncrun.parse_stats(b"Total bytes sent: 1.23K\n") == (0, 0)  # -h: not a count


@pytest.mark.parametrize("params, full_deletes, option", [
    (("-artuz",), False, "-c"), (("-a", "--update"), False, "-c"), (("-a", "-u"), False, "-c"),
    (("-artuz",), True, "-I"), (("-a", "-u"), True, "-I"),
    (("-a",), False, "-I"), (("-artz", "--usermap=a:b"), True, "-I"), (("-avz",), True, "-I"),
])
def test_listed_paths_pass_the_quick_check_by_checksum_only_for_merging_peers(
        params, full_deletes, option):
    # -u with inFullSync="false" (two-way, hubs): the copy a peer sends back is identical,
    # -c sees it, nothing is written. A one-way replica has no echo: -I, no second read.
    argv = rsync.listed_argv(rsync.Target(ip="h", module="m", common_params=params,
                                          full_deletes=full_deletes))
    assert option in argv and ({"-c", "-I"} - {option}).isdisjoint(argv)


def test_listed_paths_go_as_dot_slash_arguments_in_chunks():
    argv = rsync.listed_argv(DAEMON)
    paths = ["a", "-n", "#c", "host:x", "d/e f", ""]
    (call, stdin), = rsync.invocations(argv, paths)
    assert stdin == b""
    assert "--files-from=-" not in call and "-R" in call  # --files-from implied -R
    assert call[call.index("--") + 1:] == ["./a", "./-n", "./#c", "./host:x", "./d/e f", ".",
                                           DAEMON.destination()]
    assert call[:call.index("--")] == [a for a in argv[:argv.index("--")]
                                       if a not in ("--files-from=-", "--from0")] + ["-R"]
    # --from0 stays when rsync still reads a NUL-separated file.
    with_excludes, _ = rsync.invocations(rsync.listed_argv(DAEMON, "/tmp/x"), ["a"])[0]
    assert "--from0" in with_excludes and "--exclude-from=/tmp/x" in with_excludes


def test_arguments_are_split_under_the_limit_and_keep_every_path_in_order():
    paths = [f"dir/file{i:04}" for i in range(1000)]
    calls = rsync.invocations(rsync.listed_argv(DAEMON), paths, limit=2000)
    assert len(calls) > 5
    listed = []
    for call, stdin in calls:
        assert stdin == b"" and call[-1] == DAEMON.destination()
        args = call[call.index("--") + 1:-1]
        assert sum(len(a) + 9 for a in args) <= 2000
        listed += args
    assert listed == [f"./{p}" for p in paths]


def test_a_path_too_long_for_an_argument_goes_on_stdin():
    argv = rsync.dirs_argv(DAEMON)
    paths = ["a", "x/" * 40_000 + "y"]
    assert rsync.invocations(argv, paths) == [(argv, rsync.encode_list(paths))]


def test_a_call_without_a_file_list_is_left_as_it_is():
    argv = rsync.rename_argv(DAEMON, "old", "new")
    assert rsync.invocations(argv, []) == [(argv, b"")]


@pytest.mark.parametrize("bad", ["../etc", "/etc", "a/../../b", "a\0b"])
def test_no_path_outside_the_root_becomes_an_argument(bad):
    with pytest.raises(ValueError):
        rsync.invocations(rsync.listed_argv(DAEMON), ["ok", bad])


def test_full_sync_deletes_only_when_asked():
    t = rsync.Target(ip="h", module="m", full_deletes=False)
    argv = rsync.full_argv(t)
    assert "--delete" not in argv and "--delete-missing-args" not in argv
    assert "--ignore-missing-args" in argv
    assert "--delete" in rsync.full_argv(rsync.Target(ip="h", module="m"))


def test_ssh_command_goes_to_rsync_as_one_argument():
    t = rsync.Target(ip="h", module="/srv/www", ssh=True, rsh="ssh -p 2222 -i '/k ey'")
    argv = rsync.base_argv(t)
    assert argv[argv.index("-e") + 1] == "ssh -p 2222 -i '/k ey'"


def test_rsync_temp_files_stay_out_of_pushes_unless_dotfiles_are_replicated():
    pattern = f"--exclude={rsync.RSYNC_TEMP_PATTERN}"
    t = rsync.Target(ip="h", module="m", skip_rsync_temp=True)  # keepDotfiles="false"
    for argv in (rsync.listed_argv(t), rsync.full_argv(t), rsync.rename_argv(t, "a", "b")):
        assert pattern in argv
    kept = rsync.Target(ip="h", module="m", skip_rsync_temp=False)
    assert pattern not in rsync.listed_argv(kept) and pattern not in rsync.full_argv(kept)
