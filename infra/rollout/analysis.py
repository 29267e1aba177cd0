"""Whether a release serves its users well: the responses the new version gave, judged against thresholds.

A pure function over recorded responses (`judge`), so that it is tested on responses really recorded on
the node. Each response names the version that answered it (the app's `X-App-Version` header, set on
every response, errors included: app/nginx.conf); only the new version's responses are held against
it, so an old version that answers errors too is never blamed on the new one. A request that got no
response at all (a refused or reset connection, a timeout) names no version: it is held against the
release only once the new version answers alone (``alone_since``), when nothing else can have failed
it. Below ``min_requests`` responses of the new version the ratio says little (1 error in 2 says nothing),
so the verdict is "insufficient" unless the errors are already beyond doubt. While the window runs, only
errors beyond doubt end it (Wald's sequential test, ``beyond_doubt``: 5 failures of the first 5 at the
default 2 %, never 1 in 2); at its end the ratio over the whole window decides, once. Judging the ratio at
every look instead aborted 29 % of releases at half maxErrorRatio. The rates over simulated releases are
in docs/benchmarks.md (bench/verdict.py). Latency is judged the same way: a p99 within maxP99Ms means at
most 1 % of the responses are slower than it, so responses slower than maxP99Ms beyond doubt at 1 % (5 of
the first 5) end the window too; at its end the p99 over the window decides.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass

from infra.rollout.report import Evidence, MinuteEvidence

# The sequential test's error rates: a release exactly at maxErrorRatio is stopped by it (before
# minRequests) at most ALPHA of the time; one at the bad rate (``bad_rate``) escapes it at most BETA.
ALPHA = 0.01
BETA = 0.01
# The share of responses a p99 leaves above it.
OVER_P99 = 0.01


@dataclass(frozen=True)
class Sample:
    """One request of the prober: sent at ``t`` (seconds), answered with ``status`` by ``version`` (None when
    the response named none) after ``latency_s``; status 0 is no response (``error`` says why)."""

    t: float
    status: int
    latency_s: float
    version: str | None = None
    error: str = ""

    @property
    def answered(self) -> bool:
        return self.status != 0

    @property
    def bad(self) -> bool:
        """What users count as an error: no response, or a server error (5xx)."""
        return not self.answered or self.status >= 500


@dataclass(frozen=True)
class Thresholds:
    """What the new version must keep to (the settings maxErrorRatio, maxP99Ms, minRequests)."""

    max_error_ratio: float
    max_p99_ms: int
    min_requests: int


class State(enum.Enum):
    PASS = "pass"
    BREACH = "breach"
    INSUFFICIENT = "insufficient"


@dataclass(frozen=True)
class Judgement:
    """The verdict on the new version's responses so far, with its evidence."""

    state: State
    version: str
    requests: int
    errors: int
    p99_ms: float | None
    reason: str
    # Every response of the window by the version that answered ("-" for none) and its status (0 for no
    # response): the evidence, for people and for --json.
    counts: dict[str, dict[int, int]]
    window_s: float
    # Where the evidence came from: the command's own prober, or the ALB's metrics (infra/rollout/cloudwatch.py),
    # whose minutes are the evidence then.
    source: str = "probe"
    minutes: tuple[MinuteEvidence, ...] = ()

    @property
    def breached(self) -> bool:
        return self.state is State.BREACH

    def line(self) -> str:
        p99 = "-" if self.p99_ms is None else f"{self.p99_ms:.0f} ms"
        return f"{self.version}: {self.requests} requests, {self.errors} errors, p99 {p99}: {self.reason}"

    def as_json(self) -> Evidence:
        found: Evidence = {
            "state": self.state.value,
            "version": self.version,
            "requests": self.requests,
            "errors": self.errors,
            "p99Ms": None if self.p99_ms is None else round(self.p99_ms, 1),
            "reason": self.reason,
            "windowSeconds": round(self.window_s, 1),
            "responses": {v: {str(s): n for s, n in sorted(by.items())} for v, by in sorted(self.counts.items())},
        }
        if self.source != "probe":
            found["source"], found["minutes"] = self.source, list(self.minutes)
        return found


def bad_rate(max_error_ratio: float) -> float:
    """The error rate the sequential test tells from ``max_error_ratio``: three times it (at most 50 %)."""
    return min(0.5, 3 * max_error_ratio)


def beyond_doubt(responses: int, errors: int, max_error_ratio: float) -> bool:
    """Whether ``errors`` among ``responses`` already put the release above ``max_error_ratio`` beyond
    doubt: Wald's sequential probability ratio test of that ratio against ``bad_rate`` (A. Wald,
    Sequential Analysis, 1947), at ALPHA and BETA. With a ratio of 0, one error is a breach no later
    answer can undo."""
    if errors <= 0:
        return False
    p0 = max_error_ratio
    if p0 <= 0:
        return True
    p1 = bad_rate(p0)
    if p1 <= p0:
        return False  # a ratio of 50 % or more: nothing is beyond doubt before the window's end
    ratio = errors * math.log(p1 / p0) + (responses - errors) * math.log((1 - p1) / (1 - p0))
    return ratio >= math.log((1 - BETA) / ALPHA)


def p99_ms(latencies_s: Iterable[float]) -> float | None:
    """The 99th percentile by nearest rank (the smallest value at least 99 % of the values do not exceed)."""
    ordered = sorted(latencies_s)
    if not ordered:
        return None
    return ordered[math.ceil(0.99 * len(ordered)) - 1] * 1000


def judge(
    samples: Iterable[Sample],
    version: str,
    thresholds: Thresholds,
    *,
    alone_since: float | None = None,
    final: bool = True,
) -> Judgement:
    """The new ``version``'s responses in ``samples`` against ``thresholds``; requests sent from
    ``alone_since`` on (the new version serving alone) that got no response count against it too.

    While the window runs (``final`` False) only errors beyond doubt end it (``beyond_doubt``: the
    observed ratio crosses maxErrorRatio by chance too often to be judged at every look); at its end the
    ratio over the whole window decides, once."""
    window = list(samples)
    counts: dict[str, dict[int, int]] = {}
    for s in window:
        by = counts.setdefault(s.version or "-", {})
        by[s.status] = by.get(s.status, 0) + 1
    mine = [
        s for s in window if s.version == version or (alone_since is not None and s.t >= alone_since and not s.answered)
    ]
    errors = sum(s.bad for s in mine)
    p99 = p99_ms(s.latency_s for s in mine if s.answered)
    span = (window[-1].t - window[0].t) if window else 0.0

    def verdict(state: State, reason: str) -> Judgement:
        return Judgement(state, version, len(mine), errors, p99, reason, counts, span)

    enough = len(mine) >= thresholds.min_requests
    if beyond_doubt(len(mine), errors, thresholds.max_error_ratio):
        return verdict(
            State.BREACH,
            f"{errors} of its {len(mine)} responses were errors: above maxErrorRatio "
            f"{thresholds.max_error_ratio:g} beyond doubt{'' if enough else ', before minRequests'}",
        )
    answered = [s for s in mine if s.answered]
    slow = sum(s.latency_s * 1000 > thresholds.max_p99_ms for s in answered)
    if beyond_doubt(len(answered), slow, OVER_P99):
        return verdict(
            State.BREACH,
            f"{slow} of its {len(answered)} answers took longer than maxP99Ms {thresholds.max_p99_ms} ms: its p99 "
            f"is above it beyond doubt{'' if enough else ', before minRequests'}",
        )
    if not enough:
        return verdict(
            State.INSUFFICIENT,
            f"not enough evidence yet ({len(mine)} of the {thresholds.min_requests} responses minRequests asks for)",
        )
    if final and breaches_ratio(len(mine), errors, thresholds.max_error_ratio):
        return verdict(
            State.BREACH,
            f"{errors / len(mine):.1%} of its responses were errors, "
            f"more than maxErrorRatio {thresholds.max_error_ratio:g}",
        )
    if p99 is not None and p99 > thresholds.max_p99_ms:
        return verdict(State.BREACH, f"its p99 latency {p99:.0f} ms is above maxP99Ms {thresholds.max_p99_ms}")
    return verdict(State.PASS, "within maxErrorRatio and maxP99Ms" + ("" if final else " so far"))


def breaches_ratio(responses: int, errors: int, max_error_ratio: float) -> bool:
    """The window's end: more errors than maxErrorRatio allows over its responses."""
    return errors > max_error_ratio * responses
