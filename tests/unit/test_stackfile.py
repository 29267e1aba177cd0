"""The stack files the rollout command writes: every string reads back as written, as the engine reads YAML."""

from __future__ import annotations

import yaml
from hypothesis import given
from hypothesis import strategies as st

from infra.rollout import stackfile
from tests.unit.yaml_reading import engine_reads, plain_scalars

SHORT_SHA = st.text(alphabet="0123456789abcdef", min_size=7, max_size=40)


@given(SHORT_SHA)
def test_every_commit_sha_round_trips_as_a_string(sha: str) -> None:
    document = stackfile.with_config({"config": {"aws:region": "ap-northeast-2"}}, {"rolling:imageTag": sha})
    text = stackfile.dumps(document)
    assert plain_scalars(text) == []
    assert engine_reads(text, "rolling:imageTag") == sha
    assert yaml.safe_load(text) == document


def test_the_risky_shapes_stay_strings() -> None:
    for tag in ("12345e7", "0123456", "1234567", "deadbee", "1e10", "0x1f", "true", "null", "1.20"):
        text = stackfile.dumps({"config": {"rolling:imageTag": tag}})
        assert engine_reads(text, "rolling:imageTag") == tag


def test_pyyaml_alone_would_hand_the_engine_a_number() -> None:
    # Why the writer exists: PyYAML (YAML 1.1) leaves 12345e7 plain, and YAML 1.2 reads that as 1.2345e+11.
    text = yaml.safe_dump({"config": {"rolling:imageTag": "12345e7"}})
    assert plain_scalars(text) == ["config", "rolling:imageTag", "12345e7"]
    assert engine_reads(text, "rolling:imageTag") == 1.2345e11


def test_the_stack_file_is_kept_whole(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text('encryptionsalt: v1:abc\nconfig:\n  aws:region: ap-northeast-2\n  rolling:imageTag: "1.0.0"\n')
    document = stackfile.with_config(stackfile.read(path), {"rolling:imageTag": "12345e7"})
    assert yaml.safe_load(stackfile.dumps(document)) == {
        "encryptionsalt": "v1:abc",
        "config": {"aws:region": "ap-northeast-2", "rolling:imageTag": "12345e7"},
    }
    assert stackfile.read(tmp_path / "missing.yaml") == {}
