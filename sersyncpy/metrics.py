"""Prometheus metrics at http://HOSTIP:PORT/metrics, from sersync's unused <host hostip port>
(off when it is absent or its port is 0). Values are read from the running pipeline at each
scrape, so nothing on the replication path updates a metric.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry

logger = logging.getLogger(__name__)


def _lane_families(lanes: list) -> list:
    labels = ["root", "remote"]
    counters = {
        "events": ("changes offered to the remote's queue, before collapsing", "events_in"),
        "batches": ("batches pushed", "batches"),
        "paths": ("paths pushed", "paths"),
        "files_sent": ("regular files rsync transferred", "files_sent"),
        "bytes_sent": ("bytes rsync sent, protocol included", "bytes_sent"),
        "rsync_runs": ("rsync processes run", "rsync_runs"),
        "failed_batches": ("batches that failed (and were retried)", "failed_batches"),
    }
    families: dict[str, Any] = {
        name: CounterMetricFamily(f"sersyncpy_{name}", doc, labels=labels)
        for name, (doc, _) in counters.items()
    }
    collapsed = CounterMetricFamily("sersyncpy_events_collapsed",
                                    "changes made redundant by later ones (not pushed apart)",
                                    labels=labels)
    gauges = {
        "pending": GaugeMetricFamily("sersyncpy_pending", "changes not yet on the remote "
                                     "(queue depth)", labels=labels),
        "lag": GaugeMetricFamily("sersyncpy_lag_seconds", "age of the oldest change not yet on "
                                 "the remote (0 when current)", labels=labels),
        "failures": GaugeMetricFamily("sersyncpy_consecutive_failures", "failed batches in a "
                                      "row", labels=labels),
        "last_success": GaugeMetricFamily("sersyncpy_last_success_timestamp_seconds",
                                          "when a batch last reached the remote",
                                          labels=labels),
    }
    for lane in lanes:
        key = [lane.root, lane.target.label]
        stats = lane.stats
        for name, (_, field) in counters.items():
            families[name].add_metric(key, getattr(stats, field))
        pending, lag = lane.lag()
        collapsed.add_metric(key, max(0, stats.events_in - stats.events_out - pending))
        gauges["pending"].add_metric(key, pending)
        gauges["lag"].add_metric(key, lag)
        gauges["failures"].add_metric(key, stats.failures)
        gauges["last_success"].add_metric(key, stats.last_success or 0)
    return [*families.values(), collapsed, *gauges.values()]


class Collector:
    """Reads a Replicator (daemon.py) at scrape time."""

    def __init__(self, replicator: Any):
        self.replicator = replicator

    def collect(self):
        r = self.replicator
        yield from _lane_families(r.all_lanes())
        watches = GaugeMetricFamily("sersyncpy_watches", "directories watched", labels=["root"])
        unwatched = GaugeMetricFamily("sersyncpy_unwatched_directories", "directories that "
                                      "could not be watched (inotify limit): resynced whole "
                                      "periodically", labels=["root"])
        for lp, (count, missing) in zip(r.config.localpaths, r.watcher.counts()):
            watches.add_metric([lp.watch], count)
            unwatched.add_metric([lp.watch], missing)
        yield watches
        yield unwatched
        yield CounterMetricFamily("sersyncpy_inotify_overflows", "inotify queue overflows "
                                  "(each resynced every root)", value=r.watcher.overflows)
        if r.runner is not None:
            s = r.runner.stats
            labels = [r.runner.plugin.name]
            for name, doc, value in (
                    ("delivered", "changes passed to the plugin", s.delivered),
                    ("dropped", "changes the plugin was never told of", s.dropped)):
                family = CounterMetricFamily(f"sersyncpy_plugin_{name}", doc,
                                             labels=["plugin"])
                family.add_metric(labels, value)
                yield family
            queued = GaugeMetricFamily("sersyncpy_plugin_queued", "changes waiting for the "
                                       "plugin or for every remote", labels=["plugin"])
            queued.add_metric(labels, r.runner.pending() + r.gate.waiting())
            yield queued


class MetricsServer:
    """The /metrics endpoint, or nothing when <host> does not ask for one."""

    def __init__(self, hostip: str, port: int, replicator: Any):
        self.address = (hostip or "0.0.0.0", port)
        self.replicator = replicator
        self._server: Optional[Any] = None
        self._thread: Optional[Any] = None

    def start(self) -> None:
        if not self.address[1]:
            return
        registry = CollectorRegistry(auto_describe=False)
        registry.register(Collector(self.replicator))
        host, port = self.address
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            # Metrics are for people watching; replication goes on without them.
            logger.error("metrics: cannot listen on %s:%d (<host hostip port>): %s; no "
                         "metrics served", host, port, exc.strerror or exc)
            return
        logger.info("metrics at http://%s:%d/metrics", host, port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None
