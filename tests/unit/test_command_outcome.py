"""How a run ends (infra/rollout/command/outcome.py and run.py): each outcome's exit code and word, the
"nothing was changed" guarantee said from the outcome itself, and the one --json report every end prints."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import infra.rollout.command.run as command_run
from infra.rollout.command.outcome import Change, Outcome, Stop
from infra.rollout.command.run import main
from infra.rollout.command.session import Session
from infra.rollout.exits import Exit
from infra.rollout.report import Report
from tests.unit.rollout_fakes import ROOT


def run(argv: list[str], runner: object = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    kwargs = {"runner": runner} if runner is not None else {}
    code = main(argv, out=out, err=err, stdin=io.StringIO(), **kwargs)  # type: ignore[arg-type]
    return code, out.getvalue(), err.getvalue()


def test_exit_codes_are_distinct() -> None:
    # Iterating an IntEnum skips aliases (a second name for a value already taken); __members__ lists them.
    names = Exit.__members__
    assert len({int(code) for code in names.values()}) == len(names), "two outcomes share an exit code"


def test_outcomes_are_distinct_and_each_says_whether_it_changed_the_stack() -> None:
    names = Outcome.__members__
    assert len({o.value for o in names.values()}) == len(names), "two outcomes are one under two names"
    unchanged = {o for o in Outcome if o.changed_nothing}
    # Every refusal, every end before the update, and nothing to do: the stack is as it was.
    assert {Outcome.REFUSED, Outcome.INFRA_CHANGES, Outcome.NOT_PROBED, Outcome.NOT_PROMOTABLE} <= unchanged
    assert {Outcome.NOT_CONFIRMED, Outcome.BUSY, Outcome.UNREADABLE, Outcome.DRIFTED, Outcome.UNCHANGED} <= unchanged
    assert not {o for o in unchanged if o.exit in (Exit.ROLLED_BACK, Exit.ABORTED, Exit.ROLLBACK_FAILED)}
    assert Outcome.CRASHED.change is Change.UNKNOWN and Outcome.INTERRUPTED.change is Change.UNKNOWN


@pytest.mark.parametrize("outcome", list(Outcome))
def test_the_message_says_nothing_was_changed_exactly_when_nothing_was(outcome: Outcome) -> None:
    assert outcome.message("why").endswith("; nothing was changed") is outcome.changed_nothing


def test_json_report_shape() -> None:
    def runner(s: Session) -> Exit:
        s.report.old_image, s.report.new_image = "nginx:1", "nginx:2"
        s.report.durations = {"preview": 1.234, "up": 10.0}
        return s.end(Outcome.SUCCEEDED).exit

    code, out, _ = run(["--stack", "dev", "--tag", "2", "--json"], runner)
    assert code == 0
    assert json.loads(out) == {
        "stack": "dev",
        "oldImage": "nginx:1",
        "newImage": "nginx:2",
        "outcome": "succeeded",
        "exitCode": 0,
        "rolledBack": False,
        "changed": True,
        "durations": {"preview": 1.2, "up": 10.0},
        "error": None,
        "restored": None,
        "analysis": None,
        "unfinished": None,
        "lostRun": None,
        "watchdog": None,
        "watchdogActed": None,
    }
    assert Report.from_json(out).changed is True


@pytest.mark.parametrize("tag", ["latest", "", "1.16 1", "-x", "a" * 129])
def test_bad_tag_is_refused_before_anything(tag: str) -> None:
    code, out, err = run(["--stack", "local", f"--tag={tag}", "--json", "--cwd", str(ROOT)])
    assert code == Exit.USAGE
    assert "--tag" in err
    report = json.loads(out)
    assert (report["outcome"], report["exitCode"], report["changed"]) == ("refused", 2, False)
    assert report["error"].endswith("; nothing was changed")


def test_project_folder_must_hold_pulumi_yaml(tmp_path: Path) -> None:
    code, _, err = run(["--stack", "local", "--tag", "1.16.1", "--cwd", str(tmp_path)])
    assert code == Exit.USAGE
    assert "holds no Pulumi.yaml" in err


def test_a_stop_anywhere_ends_the_run_once_with_its_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    def act(*_: object) -> Outcome:
        raise Stop(Outcome.BUSY, "another update holds stack dev")

    monkeypatch.setattr(command_run, "act", act)
    code, out, err = run(["--stack", "dev", "--tag", "2", "--json"])
    assert code == Exit.BUSY
    assert json.loads(out)["error"] == "another update holds stack dev; nothing was changed"
    assert err.count("another update holds stack dev") == 1


def test_a_crash_has_its_own_exit_code_and_still_prints_json(monkeypatch: pytest.MonkeyPatch) -> None:
    def act(*_: object) -> Outcome:
        raise RuntimeError("something broke")

    monkeypatch.setattr(command_run, "act", act)
    code, out, err = run(["--stack", "dev", "--tag", "2", "--json"])
    assert code == 11 and int(Exit.CRASHED) == 11
    report = json.loads(out)
    assert (report["outcome"], report["exitCode"], report["changed"]) == ("crashed", 11, None)
    assert "RuntimeError: something broke" in report["error"]
    assert "Traceback" in err  # for whoever has to fix it


def test_without_pulumi_on_path_the_command_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    code, out, err = run(["--stack", "dev", "--tag", "2", "--json", "--cwd", str(ROOT)])
    assert code == Exit.USAGE
    assert "the pulumi CLI is not on PATH" in json.loads(out)["error"]
    assert "Traceback" not in err


def test_the_command_starts_without_the_pulumi_sdk_or_the_kubernetes_library() -> None:
    """Both take a good part of a second to import; the rollout needs neither before its first engine command."""
    code = "import sys, infra.rollout.cli; print(sorted({'pulumi', 'kubernetes'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"


def test_the_docs_list_exactly_the_exit_codes_that_always_mean_nothing_was_changed() -> None:
    text = " ".join((ROOT / "docs" / "rollouts.md").read_text().split())
    found = re.search(r"Codes ([\d, and]+) always mean nothing was changed", text)
    assert found is not None, "docs/rollouts.md names the codes that always mean nothing was changed"
    listed = {int(n) for n in re.findall(r"\d+", found.group(1))}
    codes = {o.exit for o in Outcome}
    never_changed = {c for c in codes if all(o.changed_nothing for o in Outcome if o.exit == c)}
    pipeline_refusals = {Exit.NOT_BOOTSTRAPPED, Exit.TAG_CONFLICT}  # the pipeline's own, before any change
    assert listed == {int(c) for c in never_changed | pipeline_refusals}
