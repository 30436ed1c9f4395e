"""benchmarks/charts.py draws valid PNG files from synthetic figures, and run_all.py keeps
the figures of benchmarks a run left out (its charts/data.json). Skipped without matplotlib:
it is a benchmark dependency (benchmarks/setup installs it), not the package's."""

from __future__ import annotations

import json
import random
import struct
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import charts  # noqa: E402
import run_all  # noqa: E402
from harness import ChartData  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def samples(rng: random.Random, median: float, n: int) -> list[float]:
    return [rng.lognormvariate(0, 0.3) * median for _ in range(n)]


def figures() -> dict[str, ChartData]:
    """One benchmark of each kind, with the shapes the real ones hand run_all: latency
    samples (one change never seen), (lag, CPU) points (one tool never equal), and lag and
    CPU per remote count."""
    rng = random.Random(17)
    trickle = ChartData("trickle", latency={
        "sersyncpy, 3 remotes": samples(rng, 0.015, 200),
        "one rsync call": samples(rng, 0.008, 30),
        "3 rsync calls in parallel": samples(rng, 0.014, 30),
        "sersyncpy, 1 remote": samples(rng, 0.009, 200)})
    churn = ChartData("churn", latency={
        "sersyncpy": samples(rng, 0.16, 2800),
        "lsyncd delay 1": samples(rng, 0.6, 2700) + [float("inf")]},
        lag_label="replicas equal after the writer (s)",
        cost={"sersyncpy": [[0.2, 4.9]], "lsyncd delay 1": [[None, 4.5]],
              "plain rsync": [[0.08, 0.04]]})
    burst = ChartData("burst", cost={"sersyncpy": [[0.59, 0.55]], "plain rsync": [[0.81, 0.37]],
                                     "lsyncd delay 1": [[3.5, 3.8]]})
    bigfile = ChartData("big file", cost={"sersyncpy -a": [[1.4, 0.7], [1.5, 0.8]],
                                          "plain rsync -a": [[1.4, 0.8], [1.6, 0.7]]})
    fanout = ChartData(
        "fan-out",
        fanout={"sersyncpy": {n: samples(rng, 0.15 * n, 3) for n in (1, 4, 16)},
                "plain rsync": {n: samples(rng, 0.15 * n, 3) for n in (1, 4, 16)},
                "relay tree (2 hops)": {16: samples(rng, 5.5, 3)}},
        fanout_cpu={"sersyncpy's process": {n: samples(rng, 0.09 * n ** 0.3, 3)
                                            for n in (1, 4, 16)},
                    "sersyncpy and its rsync clients": {n: samples(rng, 0.18 * n ** 0.7, 3)
                                                        for n in (1, 4, 16)},
                    "plain rsync's clients": {n: samples(rng, 0.09 * n, 3) for n in (1, 4, 16)}})
    return {"B3": trickle, "B8": churn, "B2": burst, "B10": bigfile, "B7": fanout}


def as_measured(chart: ChartData) -> dict:
    return {"measured": "2026-11-29 12:00 UTC", **chart.__dict__}


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_draws_every_chart_as_a_small_valid_png(tmp_path):
    drawn = charts.draw({b: as_measured(c) for b, c in figures().items()}, tmp_path)
    names = [name for name, _, _ in drawn]
    assert names == ["latency-B3.png", "latency-B8.png", "cost.png", "fanout.png"]
    for name, title, caption in drawn:
        path = tmp_path / name
        width, height = png_size(path)
        assert 400 <= width <= 1600 and 300 <= height <= 1200, (name, width, height)
        assert 10_000 < path.stat().st_size <= 150_000, (name, path.stat().st_size)
        assert title and "2026-11-29 12:00 UTC" in caption
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_draws_only_what_it_has_figures_for(tmp_path):
    assert charts.draw({"B3": as_measured(figures()["B3"])}, tmp_path)[0][0] == "latency-B3.png"
    assert [p.name for p in tmp_path.iterdir()] == ["latency-B3.png"]
    assert charts.draw({"B1": {"measured": "", "what": "filter queue"}}, tmp_path) == []


def test_a_partial_run_keeps_the_figures_and_charts_of_the_others(tmp_path):
    every = figures()
    run_all.update_charts(tmp_path, {b: as_measured(c) for b, c in every.items()})
    kept = json.loads((tmp_path / "data.json").read_text())
    assert kept["B8"]["latency"]["lsyncd delay 1"][-1] is None  # never seen: JSON's null
    assert kept["B7"]["fanout"]["sersyncpy"].keys() == {"1", "4", "16"}
    (tmp_path / "fanout.png").unlink()

    rerun = ChartData("trickle again", latency={"sersyncpy, 3 remotes": [0.02] * 10})
    section = run_all.update_charts(tmp_path, {"B3": as_measured(rerun)})
    kept = json.loads((tmp_path / "data.json").read_text())
    assert kept["B3"]["what"] == "trickle again"
    assert set(kept) == set(every)
    png_size(tmp_path / "fanout.png")  # redrawn from B7's kept figures
    for name in ("latency-B3.png", "latency-B8.png", "cost.png", "fanout.png"):
        assert f"]({tmp_path.name}/{name})" in section
    assert section.startswith(run_all.CHARTS + "\n")


def test_the_charts_section_goes_after_the_table_and_is_replaced_in_place():
    text = "# Benchmark results\n\n| table |\n\n## Rows that miss\n\nwhy\n\n## B14 scale\n\nx\n"
    first = run_all.with_charts(text, "## Charts\n\n![a](charts/a.png)\n")
    assert first.index("## Charts") < first.index("## Rows that miss")
    again = run_all.with_charts(first, "## Charts\n\n![b](charts/b.png)\n")
    assert "a.png" not in again and "b.png" in again
    assert again.count("## Charts") == 1 and again.endswith("## B14 scale\n\nx\n")
