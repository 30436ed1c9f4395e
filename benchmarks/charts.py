"""The charts of RESULTS.md, drawn with matplotlib (Agg: no display) from what the benchmarks
measured: data in, PNG files out. run_all.py hands draw() every benchmark's figures
(harness.ChartData as a dict, with "measured": when), as it keeps them in charts/data.json.

- latency-B3.png, latency-B8.png, latency-B11.png: the distribution of the per-change
  latency of the trickle, churn and delete-trickle benchmarks per tool, and of the reference
  rsync calls (the share of changes on every replica within a time, log time axis);
- cost.png: CPU seconds against lag for each workload (B2, B5, B8, B9, B10, B12, B13), a
  panel each, a point per tool and run;
- fanout.png: B7's lag and CPU against the number of remotes, sersyncpy and plain rsync.

    .venv/bin/python benchmarks/charts.py [DIRECTORY]   # redraw from DIRECTORY/data.json
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)
from matplotlib.ticker import (  # noqa: E402
    FixedLocator,
    FuncFormatter,
    LogLocator,
    NullFormatter,
    NullLocator,
)

DPI = 100
LATENCY = ("B3", "B8", "B11")  # benchmarks whose per-change latencies are drawn, a chart each
COST = ("B2", "B5", "B8", "B9", "B10", "B12", "B13")  # the panels of cost.png, in order
FANOUT = "B7"
FAMILIES = (  # a tool's colours by the start of its label; the first of each is the tool
    ("sersyncpy", ("tab:blue", "#6baed6", "#08306b")),
    ("lsyncd", ("tab:orange", "tab:red", "#8c2d04")),
    ("relay", ("tab:green",)),
    ("", ("black", "#737373", "#bdbdbd")),  # plain rsync, the references
)
MARKERS = "osD^v"


class Styles:
    """A colour, line style and marker per label, by its family: sersyncpy in blues,
    lsyncd in oranges, plain rsync (dashed lines) in greys; the first label of a family
    gets its first colour, so one tool has one colour in every chart."""

    def __init__(self):
        self.given: dict[str, dict] = {}
        self.used: dict[str, int] = {}

    def __call__(self, label: str) -> dict:
        if label not in self.given:
            prefix, colours = next((p, c) for p, c in FAMILIES if label.startswith(p))
            i = self.used.get(prefix, 0)
            self.used[prefix] = i + 1
            self.given[label] = {"color": colours[i % len(colours)],
                                 "marker": MARKERS[i % len(MARKERS)],
                                 "linestyle": "--" if prefix == "" else "-"}
        return self.given[label]


def plain_log(axis, ticks: bool = True) -> None:
    """A log axis labelled 1, 2, 5, 10, 20, ... as plain numbers, no minor labels; with
    `ticks` False the major ticks are left as they were placed."""
    if ticks:
        axis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def when(figures: dict) -> str:
    return f"measured {figures['measured']}" if figures.get("measured") else "measured"


def finite(values: list) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def latency_chart(bench: str, figures: dict, path: Path) -> str:
    """The share of changes on every replica within a time, per tool (an empirical CDF),
    with p50 and p99 marked; a change never seen keeps its line below 100 %."""
    style = Styles()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for label, values in figures["latency"].items():
        seen = sorted(v * 1000 for v in finite(values))
        if not seen:
            continue
        never = len(values) - len(seen)
        share = [100 * (i + 1) / len(values) for i in range(len(seen))]
        s = style(label)
        name = f"{label} (p50 {percentile(values, 50)}, p99 {percentile(values, 99)}"
        name += f"; {never} of {len(values)} never seen)" if never else f"; n={len(values)})"
        ax.step(seen, share, where="post", color=s["color"], linestyle=s["linestyle"],
                linewidth=1.6, label=name)
    for q in (50, 99):
        ax.axhline(q, color="#999999", linewidth=0.6, linestyle=":")
        ax.annotate(f"p{q}", (1, q), xycoords=("axes fraction", "data"), xytext=(3, -3),
                    textcoords="offset points", fontsize=8, color="#666666")
    ax.set_xscale("log")
    plain_log(ax.xaxis)
    ax.set_xlabel("latency per change (ms, log scale)")
    ax.set_ylabel("changes on every replica within it (%)")
    ax.set_ylim(0, 101)
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title(f"{bench}: {figures['what']}: latency per change", fontsize=11)
    ax.legend(fontsize=8, loc="lower right")
    save(fig, path)
    calls = any("rsync call" in label for label in figures["latency"])
    return (f"{bench}, {figures['what']} ({when(figures)}): the share of changes on every "
            f"replica within a time, per tool{' and for the reference rsync calls' * calls}; "
            "further left is faster.")


def percentile(values: list, q: float) -> str:
    """The q-th percentile by nearest rank, as text; a change never seen counts as slower
    than any."""
    ordered = sorted(math.inf if v is None else v for v in values)
    v = ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]
    return "never" if not math.isfinite(v) else f"{v * 1000:.{0 if v >= 0.1 else 1}f} ms"


def cost_chart(data: dict, benches: list[str], path: Path) -> str:
    """A panel per workload: CPU seconds against lag, a point per tool and run (lower left
    is better); a tool whose replicas never became equal is drawn at the right edge."""
    cols = min(4, len(benches))
    rows = math.ceil(len(benches) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(3.3 * cols, 6), 3.1 * rows + 0.5),
                             squeeze=False)
    style = Styles()
    for ax, bench in zip(axes.flat, benches):
        figures = data[bench]
        points = figures["cost"]
        lags = finite([lag for runs in points.values() for lag, _ in runs]) or [1.0]
        cpus = finite([cpu for runs in points.values() for _, cpu in runs]) or [1.0]
        right = max(lags) * 1.25
        for label, runs in points.items():
            s = style(label)
            xs = [lag for lag, _ in runs if lag is not None]
            ys = [cpu for lag, cpu in runs if lag is not None]
            if xs:
                ax.scatter(xs, ys, color=s["color"], marker=s["marker"], s=36, label=label,
                           zorder=3, edgecolors="white", linewidths=0.5)
            for _, cpu in [r for r in runs if r[0] is None]:
                ax.scatter([right], [cpu], color=s["color"], marker=">", s=36, zorder=3,
                           label=None if xs else f"{label} (never equal)")
                ax.annotate("never equal", (right, cpu), xytext=(-2, -11),
                            textcoords="offset points", fontsize=7, ha="right")
        ax.set_xlim(0, right * 1.05)
        ax.set_ylim(0, max(cpus) * 1.2)
        ax.set_title(f"{bench}: {figures['what']}", fontsize=9)
        ax.set_xlabel(figures["lag_label"], fontsize=8)
        ax.set_ylabel("CPU (s)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best", handletextpad=0.2, borderpad=0.3)
    for ax in list(axes.flat)[len(benches):]:
        ax.axis("off")
    fig.suptitle("CPU against lag for each workload (lower left is better)", fontsize=11)
    save(fig, path)
    return ("CPU seconds (the tool and the rsync processes it ran) against the time until every "
            "replica was equal, for each workload; a point per tool and run. "
            + "; ".join(f"{b} {when(data[b])}" for b in benches) + ".")


def spread(series: dict) -> tuple[list[int], list[float], list[float], list[float]]:
    """{remotes: [values]} as remote counts, medians, and the distances to min and max."""
    ns = sorted(series, key=int)
    mids = [statistics.median(series[n]) for n in ns]
    lows = [m - min(series[n]) for n, m in zip(ns, mids)]
    highs = [max(series[n]) - m for n, m in zip(ns, mids)]
    return [int(n) for n in ns], mids, lows, highs


def fanout_chart(figures: dict, path: Path) -> str:
    """Lag and CPU against the number of remotes (log-log), median with min-max bars."""
    fig, (lag_ax, cpu_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    style = Styles()
    counts: set[int] = set()
    for ax, key in ((lag_ax, "fanout"), (cpu_ax, "fanout_cpu")):
        for label, series in figures[key].items():
            ns, mids, lows, highs = spread(series)
            counts.update(ns)
            s = style(label)
            ax.errorbar(ns, mids, yerr=[lows, highs], color=s["color"], marker=s["marker"],
                        linestyle=s["linestyle"] if len(ns) > 1 else "none", capsize=3,
                        label=label, markersize=6)
    one = figures["fanout_cpu"].get("sersyncpy and its rsync clients", {})
    if any(int(n) == 1 for n in one):
        base = statistics.median(next(v for n, v in one.items() if int(n) == 1))
        ns = sorted(counts)
        cpu_ax.plot(ns, [base * n for n in ns], color="#999999", linestyle=":",
                    label="sersyncpy and its clients at 1 remote, times the remotes")
    for ax in (lag_ax, cpu_ax):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(FixedLocator(sorted(counts)))
        ax.xaxis.set_minor_locator(NullLocator())
        plain_log(ax.xaxis, ticks=False)
        plain_log(ax.yaxis)
        ax.set_xlabel("remotes (log scale)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    lag_ax.set_ylabel("lag after the burst (s, log scale)")
    lag_ax.set_title("lag until every replica matches", fontsize=10)
    cpu_ax.set_ylabel("CPU (s, log scale)")
    cpu_ax.set_title("CPU of the sending side (daemons not counted)", fontsize=10)
    fig.suptitle(f"{FANOUT}: {figures['what']}: lag and CPU against the number of remotes "
                 "(median, bars min–max)", fontsize=11)
    save(fig, path)
    return (f"{FANOUT}, {figures['what']} ({when(figures)}): lag and CPU against the number of "
            "remotes, sersyncpy beside one plain rsync per replica; all on one machine, the "
            "receiving daemons included.")


def save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def draw(data: dict[str, dict], directory: Path) -> list[tuple[str, str, str]]:
    """Every chart that `data` ({benchmark id: its figures}) has figures for, as PNG files
    in `directory`; returns [(file name, title, caption)], in the order to show them."""
    directory.mkdir(parents=True, exist_ok=True)
    drawn = []
    for bench in LATENCY:
        if data.get(bench, {}).get("latency"):
            name = f"latency-{bench}.png"
            caption = latency_chart(bench, data[bench], directory / name)
            drawn.append((name, f"{bench} latency per change", caption))
    benches = [b for b in COST if data.get(b, {}).get("cost")]
    if benches:
        drawn.append(("cost.png", "CPU against lag per workload",
                      cost_chart(data, benches, directory / "cost.png")))
    if data.get(FANOUT, {}).get("fanout"):
        drawn.append(("fanout.png", f"{FANOUT} lag and CPU against remotes",
                      fanout_chart(data[FANOUT], directory / "fanout.png")))
    return drawn


if __name__ == "__main__":
    where = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("charts")
    for file_name, _, _ in draw(json.loads((where / "data.json").read_text()), where):
        print(where / file_name)
