"""The real __main__.py, the schema in Pulumi.yaml, and what the local target imports."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from infra.settings import DEFAULTS, KEYS, REQUIRED, UNSET, SettingsError
from tests.unit.harness import fresh_runtime, run_program

ROOT = Path(__file__).resolve().parents[2]


def schema() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"])


def test_main_exports_the_outputs() -> None:
    exported: dict[str, Any] = {}

    def program() -> dict[str, Any]:
        original = pulumi.export
        pulumi.export = exported.__setitem__  # type: ignore[assignment]
        try:
            runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        finally:
            pulumi.export = original
        return exported

    result = run_program({"target": "local", "imageTag": "1.14.2"}, program)
    assert result.outputs == {
        "image": "nginx:1.14.2",
        "namespace": "default",
        "deploymentName": "nginx-deployment",
        "serviceName": "nginx",
    }


# The mocks' root-stack registration is never awaited when the program stops early.
@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_main_refuses_bad_config_before_any_resource() -> None:
    with fresh_runtime({"target": "local", "imageTag": "latest", "replicas": "0"}) as mocks:
        with pytest.raises(SettingsError) as caught:
            runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        assert [r.type for r in mocks.resources if r.type != "pulumi:pulumi:Stack"] == []
    message = str(caught.value)
    assert "rolling:imageTag 'latest' is not allowed" in message
    assert "rolling:replicas 0 is too small" in message


def test_schema_declares_every_key_with_type_and_description() -> None:
    declared = schema()
    assert set(declared) == set(KEYS)
    for key, spec in declared.items():
        assert spec["type"] in ("string", "integer"), key
        assert spec["description"].strip(), key


def test_schema_defaults_equal_code_defaults() -> None:
    declared = schema()
    for key, default in {**DEFAULTS, **UNSET}.items():
        assert str(declared[key]["default"]) == str(default), key
    for key in REQUIRED:
        assert "default" not in declared[key], key


def test_stack_files_hold_valid_config() -> None:
    from infra.settings import Settings

    for stack in ("dev", "local"):
        config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
        values = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("rolling:")}
        assert isinstance(values["imageTag"], str), "quote tags in stack files"
        Settings.from_values(values)
    dev = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    assert dev["aws:region"] == "ap-northeast-2"
    assert dev["rolling:target"] == "eks"


def test_local_target_does_not_import_aws_sdks() -> None:
    code = (
        "import sys, asyncio\n"
        "from tests.unit.harness import fresh_runtime, run_program\n"
        "run_program({'target': 'local', 'imageTag': '1.14.2'})\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pulumi_aws', 'pulumi_eks'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
