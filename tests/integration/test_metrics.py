"""Prometheus metrics from <metrics start hostip port>, scraped over HTTP from a running
sersyncpy; and sersync's <host hostip port>, which opens no port."""

import socket
import urllib.request

from conftest import free_port, wait_until

from integration.conftest import confxml, same_tree, write


def scrape(port: int) -> dict[str, float]:
    """{'name{labels}': value} of every sample on /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    samples = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def value(samples: dict[str, float], name: str) -> float:
    """The one sample of metric `name` (whatever its labels)."""
    found = [v for k, v in samples.items() if k == name or k.startswith(name + "{")]
    assert len(found) == 1, (name, found)
    return found[0]


def with_host(text: str, port: int) -> str:
    """Metrics asked for on `port` (sersync's <host> stays as it is)."""
    return text.replace('<debug start="false"/>',
                        f'<metrics start="true" port="{port}"/>\n    <debug start="false"/>')


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_metrics_count_what_was_pushed(rsync_daemon, src, sersyncpy):
    good, down = rsync_daemon(), rsync_daemon()
    down.stop()
    port = free_port()
    proc = sersyncpy(with_host(confxml([(src, [(good, "backup"), (down, "backup")])]), port))
    assert listening(port)  # from the start: the server is up before the start-up notice
    for i in range(5):
        write(src / f"d/f{i}", b"x" * 1000)
    same_tree(src, good.modules["backup"])
    label = f'remote="127.0.0.1:{good.port}::backup",root="{src}"'
    wait_until(lambda: scrape(port).get(f"sersyncpy_files_sent_total{{{label}}}", 0) >= 5,
               timeout=10)
    samples = scrape(port)
    assert samples[f"sersyncpy_bytes_sent_total{{{label}}}"] >= 5000
    assert samples[f"sersyncpy_pending{{{label}}}"] == 0
    assert samples[f"sersyncpy_lag_seconds{{{label}}}"] == 0
    assert samples[f"sersyncpy_rsync_runs_total{{{label}}}"] >= 1
    # At least the new directory (its files may be found by its scan, not as events).
    assert samples[f"sersyncpy_events_total{{{label}}}"] >= 1
    watcher = "fanotify" if samples.get('sersyncpy_watcher{watcher="fanotify"}') else "inotify"
    assert samples[f'sersyncpy_watcher{{watcher="{watcher}"}}'] == 1
    # inotify: src and src/d; fanotify watches the file system, with no watch per directory
    assert value(samples, "sersyncpy_watches") == (2 if watcher == "inotify" else 0)
    assert value(samples, "sersyncpy_unwatched_directories") == 0
    # The remote that is down: its changes wait, its lag grows, its failures count.
    down_label = f'remote="127.0.0.1:{down.port}::backup",root="{src}"'
    wait_until(lambda: scrape(port)[f"sersyncpy_consecutive_failures{{{down_label}}}"] >= 1,
               timeout=10)
    samples = scrape(port)
    assert samples[f"sersyncpy_pending{{{down_label}}}"] >= 1
    assert samples[f"sersyncpy_lag_seconds{{{down_label}}}"] > 0
    assert samples[f"sersyncpy_failed_batches_total{{{down_label}}}"] >= 1
    proc.terminate()


def test_sersyncs_host_element_opens_no_port_so_two_instances_share_a_host(
        rsync_daemon, tmp_path, sersyncpy):
    # <host hostip="localhost" port="8008"> is in sersync's sample and nearly every real
    # config; sersync only printed it. Two instances (one per module) must both run.
    port = free_port()
    procs = []
    for name in ("one", "two"):
        daemon, src = rsync_daemon(), tmp_path / name
        src.mkdir()
        text = confxml([(src, [(daemon, "backup")])]).replace(
            '<host hostip="localhost" port="0"/>', f'<host hostip="localhost" port="{port}"/>')
        procs.append((sersyncpy(text), src, daemon))
    assert not listening(port)
    for proc, src, daemon in procs:
        write(src / "f", b"f")
        same_tree(src, daemon.modules["backup"])
        # Log text kept: no ERROR reached the admin (one that could not listen would say
        # so); no status field or metric of a port never opened could.
        assert " ERROR " not in proc.log(), proc.log()


def test_a_taken_port_is_an_error_but_replication_goes_on(daemon, src, sersyncpy):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        proc = sersyncpy(with_host(confxml([(src, [(daemon, "backup")])]), port))
        # Log text kept: the one-line ERROR naming the address is the product.
        assert "metrics: cannot listen on 127.0.0.1" in proc.log()
        write(src / "still", b"replicated")
        same_tree(src, daemon.modules["backup"])
    finally:
        taken.close()
