"""The figures the docs quote from the benchmarks' last results (bench/results/*.json) are those results:
a bench run that changes one makes this fail until the docs say it too."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"


def doc(name: str) -> str:
    return " ".join((ROOT / "docs" / name).read_text().split())


def results(name: str) -> dict[str, Any]:
    return dict(json.loads((RESULTS / name).read_text()))


def test_the_toolchain_page_quotes_the_last_warm_figures() -> None:
    text = doc("toolchain.md")
    warm = results("latest.json")["toolchain"]["warm_check_s"]["median"]
    assert f"| warm `make toolchain` (everything built) | {warm:g} s" in text
    cluster_up = results("traffic.json")["node"]["cluster_up_s"]
    assert f"| warm `make cluster-up`, node Ready | {cluster_up:g} s" in text


def test_the_traffic_table_and_its_prose_are_the_last_run() -> None:
    text = doc("benchmarks.md")
    runs = {r["name"]: r for r in results("traffic.json")["results"]}
    for name, run in runs.items():
        row = f"| {name} | {run['failed']} of {run['requests']} | {run['plain_failed']} of {run['plain_requests']} |"
        assert row in text, row
    seed = runs["seed deployment.yaml + kubectl set image"]
    said = re.search(r"The keep-alive client\*\* that never re-sends lost (\d+) requests through the seed", text)
    assert said is not None and int(said.group(1)) == seed["plain_failed"]
    node = results("traffic.json")["node"]
    assert f"| warm `cluster-up`, node Ready | {node['cluster_up_s']:g} s |" in text


def test_the_verdict_tables_are_the_simulation_and_the_simulation_holds_its_rows() -> None:
    from dataclasses import asdict

    from bench import verdict

    text = (ROOT / "docs" / "benchmarks.md").read_text()
    assert (RESULTS / "verdict.md").read_text().strip() in text
    assert (RESULTS / "verdict-cost.md").read_text().strip() in text
    found = results("verdict.json")
    rows = {(r["way"], r["kind"], r["rate"], r["traffic"]): r for r in found["rows"]}
    runs = found["rows"][0]["runs"]
    local = verdict.WAYS[1]
    for kind, rate, traffic in (("errors", 0.06, 10),):
        again = verdict.row(verdict.Release(local, kind, rate, traffic), runs)
        assert asdict(again) == rows[(local.name, kind, rate, traffic)], (kind, rate, traffic)


@pytest.mark.parametrize(
    ("stem", "rows"),
    [
        ("analysis", {"canary 1": "`rollout --canary 1`", "no canary": "`rollout` (analysis during"}),
        (
            "analysis-large",
            {
                "canary 1": "`rollout --canary 1`, 9 replicas",
                "no canary": "`rollout`, 9 replicas, `minReadySeconds` 3",
                "no canary, minReadySeconds 1": "`rollout`, 9 replicas, `minReadySeconds` 1",
            },
        ),
        (
            "analysis-slow",
            {"canary 1": "`rollout --canary 1`, a slow release", "no canary": "`rollout`, a slow release"},
        ),
    ],
)
def test_the_bad_release_tables_are_the_last_analysis_runs(stem: str, rows: dict[str, str]) -> None:
    text = doc("benchmarks.md")
    ways = {w["name"]: w for w in results(f"{stem}.json")["ways"]}
    assert set(ways) >= set(rows)
    for name, row in rows.items():
        way = ways[name]
        found = re.search(re.escape(row) + r"[^|]*\| [^|]+ \| (\d+) of (\d+) \| ([\d.]+) s \|", text)
        assert found is not None, row
        assert (int(found.group(1)), int(found.group(2))) == (way["bad_responses"], way["requests"])
        assert float(found.group(3)) == way["first_bad_to_restored_s"]


def test_the_noisy_releases_are_the_last_run() -> None:
    text = doc("benchmarks.md")
    found = results("analysis-noisy.json")
    published = " ".join((RESULTS / "analysis-noisy.md").read_text().split("\n", 2)[2].split())
    assert published in text
    assert f"{found['shipped']} of {len(found['releases'])} shipped" in published


def test_the_readmes_caught_figures_are_the_last_caught_run() -> None:
    # The README's sentence on `make bench-caught`: bad responses and the time to the old version everywhere for
    # the release answering every user 500 (with and without a canary), and how often each other kind was caught.
    text = " ".join((ROOT / "README.md").read_text().split())
    found = results("analysis-caught.json")
    rows = {r["name"]: r["runs"] for r in found["rows"]}

    def spread(values: list[float]) -> str:
        low, high = min(values), max(values)
        return f"{low:g}" if low == high else f"{low:g} to {high:g}"

    canary, plain = rows["Ready, every answer 500, --canary 1"], rows["Ready, every answer 500"]
    bad = f"{spread([r['bad_responses'] for r in canary])} bad responses with a canary and "
    bad += f"{spread([r['bad_responses'] for r in plain])} without"
    assert bad in text, bad
    restored = [r["first_bad_to_restored_s"] for r in canary + plain]
    assert f"{min(restored):.1f} to {max(restored):.1f} s after the first" in text
    caught = {name: sum(r["exit"] == 15 for r in runs) for name, runs in rows.items()}
    for name in ("5 % of answers 500", "10 % of connections closed unanswered", "pages in about 2 s"):
        assert caught[name] == 5, name  # "each caught 5 times of 5"
    assert "each caught 5 times of 5" in text
    assert f"3 % failing (inside the zone the test is indifferent to) {caught['3 % of answers 500']} of 5" in text
    bursts = found["bursts"]
    releases = bursts["releases"]
    assert bursts["shipped"] == len(releases) and f"{len(releases)} healthy releases answering shared" in text


def test_the_weighted_canarys_table_is_the_last_bench_weighted_run() -> None:
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    for line in (RESULTS / "analysis-weighted.md").read_text().splitlines()[2:]:
        assert line in text, line
