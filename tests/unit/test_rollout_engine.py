"""The `pulumi` CLI as the rollout command runs it: arguments, errors parsed once, busy stacks, interrupts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from infra.identity import DEPLOYMENT, DEPLOYMENT_TYPE
from infra.images import CONTAINER_IMAGE_PATH as IMAGE
from infra.rollout.engine import Engine, EngineError, StackBusyError, preview_steps
from infra.rollout.review import unexpected_steps

ENGINE_FAILURE = """Updating (local):
    pulumi:pulumi:Stack rolling-local running error: update failed
Diagnostics:
  pulumi:pulumi:Stack (rolling-local):
    error: update failed

  kubernetes:apps/v1:Deployment (nginx-deployment):
    error: 2 errors occurred:
    \t* [ProgressDeadlineExceeded] ReplicaSet "nginx-deployment-687fcb955f" has timed out progressing.
    \t* [Pod nginx-deployment-687fcb955f-sx892]: [ImagePullBackOff] Back-off pulling image "nginx:1-broken"

Resources:
    2 errored
"""


def test_the_summary_keeps_the_engine_errors_with_their_details() -> None:
    err = EngineError(["up"], 255, ENGINE_FAILURE, "")
    assert err.summary == (
        "error: 2 errors occurred: "
        '* [ProgressDeadlineExceeded] ReplicaSet "nginx-deployment-687fcb955f" has timed out progressing. '
        '* [Pod nginx-deployment-687fcb955f-sx892]: [ImagePullBackOff] Back-off pulling image "nginx:1-broken"'
    )


def fake_pulumi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stdout: str, stderr: str, code: int) -> Path:
    """A `pulumi` on PATH that records its arguments and answers as told."""
    (tmp_path / "out").write_text(stdout)
    (tmp_path / "err").write_text(stderr)
    script = tmp_path / "bin" / "pulumi"
    script.parent.mkdir()
    script.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/args\ncat {tmp_path}/out\ncat {tmp_path}/err >&2\nexit {code}\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}:{os.environ['PATH']}")
    return tmp_path / "args"


@pytest.mark.parametrize(
    "stderr",
    [
        # A file backend's lock, and Pulumi Cloud's answer.
        "error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end",
        "error: [409] Conflict: Another update is currently in progress.",
    ],
)
def test_a_locked_stack_is_busy_and_says_nothing_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stderr: str
) -> None:
    fake_pulumi(tmp_path, monkeypatch, "", stderr, 255)
    with pytest.raises(StackBusyError) as caught:
        Engine(tmp_path, "dev").up({"rolling:imageTag": "1.16.1"})
    assert caught.value.summary == stderr


def test_another_failure_is_not_busy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_pulumi(tmp_path, monkeypatch, "", "error: boom", 255)
    with pytest.raises(EngineError) as caught:
        Engine(tmp_path, "dev").up({"rolling:imageTag": "1.16.1"})
    assert not isinstance(caught.value, StackBusyError)
    assert caught.value.summary == "error: boom"


def test_engine_commands_name_the_stack_and_hold_the_update_to_the_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = fake_pulumi(tmp_path, monkeypatch, "", "", 0)
    Engine(tmp_path, "dev").up({"rolling:imageTag": "1.16.1"}, tmp_path / "plan.json")
    assert args.read_text().split("\n")[:-1] == [
        "--non-interactive",
        "up",
        "--yes",
        "--skip-preview",
        "--color",
        "never",
        "--config",
        "rolling:imageTag=1.16.1",
        "--plan",
        str(tmp_path / "plan.json"),
        "--stack",
        "dev",
    ]


def test_a_release_cause_is_the_update_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = fake_pulumi(tmp_path, monkeypatch, "", "", 0)
    cause = "ship localhost:5000/rolling-app:1.16.1 by alice"
    Engine(tmp_path, "dev").up({"rolling:imageTag": "1.16.1", "rolling:changeCause": cause})
    said = args.read_text().split("\n")
    assert said[said.index("--message") + 1] == cause
    assert f"rolling:changeCause={cause}" in said


PREVIEW = {
    "steps": [
        {
            "op": "same",
            "urn": "urn:pulumi:dev::rolling::pulumi:pulumi:Stack::rolling-dev",
            "newState": {"type": "pulumi:pulumi:Stack"},
        },
        {
            "op": "update",
            "urn": "urn:pulumi:dev::rolling::x$kubernetes:apps/v1:Deployment::nginx-deployment",
            "newState": {"type": DEPLOYMENT_TYPE},
            "diffReasons": ["spec"],
            "detailedDiff": {IMAGE: {"kind": "update", "inputDiff": True}},
        },
        {
            "op": "delete",
            "urn": "urn:pulumi:dev::rolling::x$kubernetes:core/v1:Service::nginx-service",
            "oldState": {"type": "kubernetes:core/v1:Service"},
        },
    ],
    "changeSummary": {"same": 6, "update": 1, "delete": 1},
}


def test_preview_steps_come_from_the_engines_json() -> None:
    steps = preview_steps(json.dumps(PREVIEW))
    assert [(s.op, s.type, s.name) for s in steps] == [
        ("same", "pulumi:pulumi:Stack", "rolling-dev"),
        ("update", DEPLOYMENT_TYPE, DEPLOYMENT),
        ("delete", "kubernetes:core/v1:Service", "nginx-service"),
    ]
    assert [s.name for s in unexpected_steps(steps)] == ["nginx-service"]


def test_a_failed_json_command_says_its_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failed = {
        "steps": [],
        "diagnostics": [
            {
                "message": "error: invalid stack configuration (1 problem(s)):\n"
                "  - rolling:replicas 0 is too small; use 1 or more\n",
                "severity": "error",
            },
            {"message": "warning: something else\n", "severity": "warning"},
        ],
    }
    fake_pulumi(tmp_path, monkeypatch, json.dumps(failed), "", 255)
    with pytest.raises(EngineError) as caught:
        Engine(tmp_path, "dev").preview(tmp_path / "config.yaml", tmp_path / "plan.json")
    assert not isinstance(caught.value, StackBusyError)
    assert '"steps"' not in str(caught.value)  # the errors, not the whole document
    assert caught.value.summary == (
        "error: invalid stack configuration (1 problem(s)): - rolling:replicas 0 is too small; use 1 or more"
    )


def test_a_plan_violation_is_said_in_a_line_or_two() -> None:
    planned = "{map[template:{map[spec:{map[containers:{[{map[image:{r/app:12345e7} name:{nginx}]}]}]}]}]}"
    now = planned.replace("12345e7", "1.2345e+11")
    stdout = (
        "Updating (dev):\n"
        + "  pulumi:pulumi:Stack rolling-dev  "
        + "x" * 4000
        + "\n"
        + "error: resource urn:pulumi:dev::rolling::rolling:index:WebApp$kubernetes:apps/v1:Deployment::"
        + f"nginx-deployment violates plan: properties changed: ~~spec[{planned}!={now}]\n"
    )
    said = EngineError(["up"], 255, stdout, "").summary
    assert len(said) < 400
    assert "nginx-deployment's spec" in said
    assert "the container image was r/app:12345e7 in the preview, r/app:1.2345e+11 now" in said


def test_a_plan_violation_names_the_image_when_the_change_cause_differs_too() -> None:
    # A plain `up` names why the image runs (`up IMAGE`): the annotation differs with the image, and the
    # engine lists metadata's change before spec's.
    spec = "{map[template:{map[spec:{map[containers:{[{map[image:{r/app:1.15.0} name:{nginx}]}]}]}]}]}"
    meta = "{map[annotations:{map[kubernetes.io/change-cause:{up r/app:1.15.0}]}]}"
    detail = (
        f"~~metadata[{meta}!={meta.replace('1.15.0', '1.16.1')}], ~~spec[{spec}!={spec.replace('1.15.0', '1.16.1')}]"
    )
    stdout = (
        f"error: resource urn:pulumi:dev::rolling::x::nginx-deployment violates plan: properties changed: {detail}\n"
    )
    said = EngineError(["up"], 255, stdout, "").summary
    assert "nginx-deployment's metadata, spec" in said
    assert "the container image was r/app:1.15.0 in the preview, r/app:1.16.1 now" in said


def stand_in_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `pulumi` on PATH that says it started, runs 10 s, and on SIGINT records it and exits 255, as the
    engine does after cancelling an update. In Python, not sh: like the engine (Go's signal.Notify) it
    takes SIGINT even when started with SIGINT ignored (a job in the background of a script, under
    nohup), where a shell's `trap` cannot."""
    script = tmp_path / "bin" / "pulumi"
    script.parent.mkdir()
    script.write_text(
        f"#!{sys.executable}\n"
        "import signal, sys, time\n"
        "def stop(*_):\n"
        f"    open({str(tmp_path / 'signals')!r}, 'a').write('interrupted\\n')\n"
        "    sys.exit(255)\n"
        "signal.signal(signal.SIGINT, stop)\n"
        f"open({str(tmp_path / 'started')!r}, 'w').write('started')\n"
        "time.sleep(10)\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}:{os.environ['PATH']}")


def interrupt_once_started(engine: Engine, tmp_path: Path) -> tuple[list[EngineError], float]:
    """Run an update in a thread, interrupt it once the stand-in says it started; what it raised, and
    the seconds until it ended (15 at most)."""
    failed: list[EngineError] = []

    def update() -> None:
        try:
            engine.up({"rolling:imageTag": "1.16.1"})
        except EngineError as err:
            failed.append(err)

    worker = threading.Thread(target=update)
    start = time.monotonic()
    worker.start()
    while not (tmp_path / "started").exists() and time.monotonic() - start < 5:
        time.sleep(0.01)
    engine.interrupt()
    worker.join(timeout=15)
    return failed, time.monotonic() - start


def test_interrupt_sends_one_ctrl_c_to_the_running_command_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A `pulumi` that records SIGINT and exits as the engine does after cancelling an update.
    stand_in_engine(tmp_path, monkeypatch)
    engine = Engine(tmp_path, "dev")
    engine.interrupt()  # nothing runs: nothing to interrupt, no error
    failed, took = interrupt_once_started(engine, tmp_path)
    assert took < 5, "the command ended on the interrupt"
    assert (tmp_path / "signals").read_text() == "interrupted\n"
    assert len(failed) == 1 and failed[0].code == 255


def test_an_interrupt_while_the_command_starts_reaches_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The engine's process runs (and can be seen running) a moment before `Popen` returns to the caller;
    # an interrupt in that moment must wait for it, not find nothing running and be lost. A slow return
    # makes the moment long enough to hit every time.
    stand_in_engine(tmp_path, monkeypatch)

    class SlowToReturn(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            while not (tmp_path / "started").exists():
                time.sleep(0.01)
            time.sleep(0.3)

    monkeypatch.setattr(subprocess, "Popen", SlowToReturn)  # the module the engine calls it through
    engine = Engine(tmp_path, "dev")
    failed, took = interrupt_once_started(engine, tmp_path)
    assert len(failed) == 1 and failed[0].code == 255, "the interrupt reached the command"
    assert took < 5


SIGINT_BIT = 1 << (signal.SIGINT - 1)


# What runs before the child is started: nothing, the helper, or the rollout command's entry point
# (its runner starts the child, after everything the command does first).
SPAWN = "line = subprocess.run(['grep', 'SigIgn', '/proc/self/status'], capture_output=True, text=True).stdout\n"
BEFORE_SPAWN = {
    "nothing": SPAWN,
    "helper": "from infra.rollout.engine import interruptible_children\ninterruptible_children()\n" + SPAWN,
    "rollout command": (
        "from infra.rollout import cli\n"
        "from infra.rollout.exits import Exit\n"
        "def runner(run):\n"
        "    global line\n"
        "    " + SPAWN + "    return Exit.OK\n"
        "cli.main(['--stack', 'dev', '--tag', '1.0.0'], runner=runner)\n"
    ),
}


def ignored_by_child(before: str) -> bool:
    """Whether a process started by a Python process that was itself started ignoring SIGINT ignores it too."""
    program = "import subprocess, sys\n" + BEFORE_SPAWN[before] + "print(int(line.split()[1], 16))\n"
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # a background job's start
    )
    return bool(int(done.stdout.split()[-1]) & SIGINT_BIT)


def test_children_start_with_sigint_default_even_when_the_command_was_started_ignoring_it() -> None:
    # The engine stops its language host with SIGINT and waits 5 s if it is ignored: every engine run.
    assert ignored_by_child("nothing")  # what a background start passes on
    assert not ignored_by_child("helper")
    assert not ignored_by_child("rollout command")


LOCKED = (
    "error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or delete the "
    "lock file with `pulumi cancel`.\n  file:///s/.pulumi/locks/organization/rolling/dev/a.json: created by "
    "runner@runner-3 (pid 4300) at 2026-12-07T08:00:00Z"
)


def locked_pulumi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `pulumi` on PATH whose stack is locked until `pulumi cancel` runs; every command is recorded."""
    (tmp_path / "locked").write_text(LOCKED)
    script = tmp_path / "bin" / "pulumi"
    script.parent.mkdir()
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {tmp_path}/commands\n'
        f'case "$*" in *cancel*) rm -f {tmp_path}/locked; exit 0 ;; esac\n'
        f"if [ -f {tmp_path}/locked ]; then cat {tmp_path}/locked >&2; exit 255; fi\n"
        "exit 0\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}:{os.environ['PATH']}")
    return tmp_path / "commands"


def test_a_lock_whose_holder_is_gone_is_removed_and_the_command_runs_once_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = locked_pulumi(tmp_path, monkeypatch)
    engine = Engine(tmp_path, "dev")
    seen: list[list[tuple[str, int]]] = []

    def recover(busy: StackBusyError) -> bool:
        seen.append([(o.host, o.pid) for o in busy.owners])
        engine.cancel()
        return True

    engine.on_busy = recover
    engine.up({"rolling:imageTag": "1.16.1"})
    assert seen == [[("runner-3", 4300)]]
    ran = [line.split(" --stack")[0] for line in commands.read_text().splitlines()]
    assert [r.split()[1] for r in ran] == ["up", "cancel", "up"], ran


def test_a_lock_that_may_be_live_is_left_and_the_command_fails_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = locked_pulumi(tmp_path, monkeypatch)
    engine = Engine(tmp_path, "dev")
    engine.on_busy = lambda busy: False
    with pytest.raises(StackBusyError):
        engine.up({"rolling:imageTag": "1.16.1"})
    assert "cancel" not in commands.read_text()
    # Without a hook (a run with no lease), the same.
    with pytest.raises(StackBusyError):
        Engine(tmp_path, "dev").up({"rolling:imageTag": "1.16.1"})


def test_what_a_killed_update_was_creating_is_taken_into_the_state_and_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = "urn:pulumi:dev::rolling::rolling:index:WebApp$kubernetes:apps/v1:Deployment::nginx-canary"
    resource: dict[str, Any] = {
        "urn": canary,
        "custom": True,
        "type": "kubernetes:apps/v1:Deployment",
        "inputs": {"metadata": {"name": "nginx-canary", "namespace": "rolling"}},
    }
    pending = {"type": "creating", "resource": resource}
    updating = {"type": "updating", "resource": {"urn": "urn:x", "type": "kubernetes:apps/v1:Deployment"}}
    exported = {
        "version": 3,
        "deployment": {"resources": [{"urn": "urn:ns"}], "pending_operations": [pending, updating]},
    }
    (tmp_path / "export.json").write_text(json.dumps(exported))
    script = tmp_path / "bin" / "pulumi"
    script.parent.mkdir()
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {tmp_path}/commands\n'
        f'case "$*" in *"stack export"*) cat {tmp_path}/export.json ;; '
        f'*"stack import"*) cp "$5" {tmp_path}/imported.json ;; esac\n'
        "exit 0\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}:{os.environ['PATH']}")
    assert Engine(tmp_path, "dev").adopt_pending_creates() == [canary]
    imported = json.loads((tmp_path / "imported.json").read_text())["deployment"]
    assert imported["resources"][-1] == {**resource, "id": "rolling/nginx-canary"}
    assert imported["pending_operations"] == [updating], "an interrupted update is the engine's to finish"
    commands = (tmp_path / "commands").read_text().splitlines()
    assert commands[-1].startswith(f"--non-interactive refresh --yes --skip-preview --color never --target {canary}")
