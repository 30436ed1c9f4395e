"""`sersyncpy demo`: live replication of a demo folder onto a local rsync daemon it starts.

It writes a real confxml.xml for that set-up, so the demo runs the same code path as a
deployment, and shows a file arriving in the module.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import time
from pathlib import Path
from xml.sax.saxutils import quoteattr

from sersyncpy import config, logs
from sersyncpy.localdaemon import LocalDaemon
from sersyncpy.replicator import Replicator

CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by `sersyncpy demo`: {source} -> rsync daemon module "demo" on port {port}. -->
<head version="2.5">
    <filter start="false"/>
    <inotify>
        <delete start="true"/>
        <createFolder start="true"/>
        <createFile start="false"/>
        <closeWrite start="true"/>
        <moveFrom start="true"/>
        <moveTo start="true"/>
        <attrib start="true"/>
        <modify start="false"/>
    </inotify>
    <sersync>
        <localpath watch={source_attr}>
            <remote ip="127.0.0.1" name="demo" port="{port}"/>
        </localpath>
        <rsync>
            <commonParams params="-a"/>
            <auth start="true" users="{user}" passwordfile={password_attr}/>
            <timeout start="true" time="30"/>
        </rsync>
        <failLog path={fail_log_attr} timeToExecute="60"/>
    </sersync>
</head>
"""


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _interrupt(_signum, _frame):
    raise KeyboardInterrupt


def main(argv: list[str], version: str) -> int:
    """`sersyncpy demo ARGS`; `version` is the line `sersyncpy --version` prints."""
    p = argparse.ArgumentParser(prog="sersyncpy demo", description=__doc__)
    p.add_argument("--dir", default="demo", help="the demo folder (default: ./demo)")
    p.add_argument("--seconds", type=float, default=0,
                   help="stop after this many seconds (default: run until Ctrl-C)")
    args = p.parse_args(argv)
    home = Path(args.dir).resolve()
    source, module = home / "source", home / "module"
    if module.exists():
        shutil.rmtree(module)  # a fresh replica, so what arrives is visibly this run's work
    source.mkdir(parents=True, exist_ok=True)
    logs.setup(False)
    logging.getLogger("sersyncpy.push").setLevel(logging.WARNING)  # no line per batch

    rsyncd = LocalDaemon(home / "rsyncd", {"demo": module})
    print(version)
    # Started before the confxml is written: a first start may move off a port taken meanwhile.
    rsyncd.start()
    replicator = None
    try:
        conf_path = home / "confxml.xml"
        conf_path.write_text(CONFIG.format(
            source=source, source_attr=quoteattr(str(source)), port=rsyncd.port,
            user=rsyncd.user, password_attr=quoteattr(str(rsyncd.password_file)),
            fail_log_attr=quoteattr(str(home / "fail_log.sh")),
        ))
        replicator = Replicator(config.load(str(conf_path)))
        print(f"rsync daemon: 127.0.0.1:{rsyncd.port}, module 'demo' -> {module}")
        signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C, stopping rsyncd too
        # returns once every directory is watched; a full push only if there is something
        replicator.start(full_first=bool(os.listdir(source)))
        hello = source / "hello.txt"
        started = time.monotonic()
        hello.write_text(f"written by sersyncpy demo at {time.ctime()}\n")
        if wait_for(lambda: (module / "hello.txt").exists()
                    and (module / "hello.txt").read_bytes() == hello.read_bytes(), 10):
            ms = (time.monotonic() - started) * 1000
            print(f"ARRIVED: {hello} -> {module / 'hello.txt'} in {ms:.0f} ms", flush=True)
        else:
            print(f"NOT ARRIVED: {hello} did not reach {module} in 10 s", flush=True)
            return 1
        print(f"Live now: write, rename or delete files in {source};")
        print(f"they appear in {module}. The config is {conf_path}. Ctrl-C stops.", flush=True)
        deadline = time.monotonic() + args.seconds if args.seconds else None
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        if replicator is not None:
            replicator.stop()
        rsyncd.stop()
    same = sorted(os.listdir(source)) == sorted(os.listdir(module))
    print(f"stopped; source and module top-level listings {'match' if same else 'differ'}")
    return 0
