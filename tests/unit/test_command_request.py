"""What `rollout` is asked: the arguments of each action, parsed into its request (infra/rollout/command/request.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.rollout.command.request import Abort, History, Promote, PromoteFrom, Ship, Undo, parse


def test_ship_is_the_action_when_none_is_named() -> None:
    request = parse(["--stack", "dev", "--tag", "1.16.1", "--canary", "2", "--pause", "--yes", "--record", "r.jsonl"])
    assert request == Ship(stack="dev", tag="1.16.1", canary=2, pause=True, yes=True, record=Path("r.jsonl"))
    assert request.action == "ship"
    assert parse(["ship", "--stack", "dev", "--tag", "1"]) == Ship(stack="dev", tag="1")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["promote", "--stack", "dev"], Promote(stack="dev")),
        (["promote", "--from", "dev", "--to", "prod", "--yes"], PromoteFrom(stack="prod", source="dev", yes=True)),
        (["abort", "--stack", "dev", "--no-rollback"], Abort(stack="dev", no_rollback=True)),
        (["history", "--stack", "dev", "--json"], History(stack="dev", json=True)),
        (["undo", "--stack", "dev", "--to", "3"], Undo(stack="dev", revision=3)),
        (["undo", "--stack", "dev"], Undo(stack="dev")),
    ],
)
def test_each_action_has_its_request(argv: list[str], expected: object) -> None:
    assert parse(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [["promote", "--stack", "dev"], ["--stack", "dev", "promote"], ["--json", "--stack", "dev", "promote", "--yes"]],
)
def test_the_action_word_may_stand_anywhere(argv: list[str]) -> None:
    request = parse(argv)
    assert isinstance(request, Promote) and request.stack == "dev"


def test_a_stack_named_like_an_action_is_a_stack() -> None:
    request = parse(["--stack", "abort", "--tag", "1.0"])
    assert isinstance(request, Ship) and request.stack == "abort"


def test_a_request_cannot_be_changed_once_made() -> None:
    request = parse(["--stack", "dev", "--tag", "1.0"])
    with pytest.raises(AttributeError):
        request.stack = "prod"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--tag", "1.0"], "the following arguments are required: --stack"),
        (["--stack", "dev", "--tag", "1.0", "--pause"], "--pause stops after a canary"),
        (["--stack", "dev", "--tag", "1.0", "--canary", "0"], "'0' is not a number of pods from 1 to 100"),
        (["promote", "--stack", "dev", "--tag", "1.0"], "unrecognized arguments: --tag 1.0"),
        (["promote", "--from", "dev", "--to", "dev"], "--from and --to name the same stack (dev)"),
        (["undo", "--stack", "dev", "--to", "0"], "'0' is not a revision"),
        (["history", "--stack", "dev", "--yes"], "unrecognized arguments: --yes"),
    ],
)
def test_bad_arguments_are_refused_with_usage(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse(argv)
    assert caught.value.code == 2
    assert says in capsys.readouterr().err
