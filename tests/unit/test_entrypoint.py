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

import infra.program
from infra import settings
from tests.unit.harness import Recorder, fresh_runtime, run_program
from tests.unit.samples.settings import APART, NON_DEFAULT

ROOT = Path(__file__).resolve().parents[2]


def schema() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"])


def test_main_exports_the_outputs() -> None:
    exported: dict[str, Any] = {}

    def program(mocks: Recorder) -> dict[str, Any]:
        original = pulumi.export
        pulumi.export = exported.__setitem__  # type: ignore[assignment]
        try:
            infra.program.main(mocks.settle)
        finally:
            pulumi.export = original
        return exported

    result = run_program({"target": "local", "imageTag": "1.14.2"}, program)
    assert len(result.mocks.waits) == 1, "the rollout is waited for, by the settle passed in"
    assert result.outputs == {
        "image": "nginxinc/nginx-unprivileged:1.14.2",
        "imageTag": "1.14.2",
        "namespace": "rolling",
        "deploymentName": "nginx-deployment",
        "serviceName": "nginx",
        "url": "http://198.18.16.10",
    }


# The mocks' root-stack registration is never awaited when the program stops early.
@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_main_refuses_bad_config_before_any_resource() -> None:
    with fresh_runtime({"target": "local", "imageTag": "latest", "replicas": "0"}) as mocks:
        with pytest.raises(pulumi.RunError) as caught:
            runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        assert [r.type for r in mocks.resources if r.type != "pulumi:pulumi:Stack"] == []
    message = str(caught.value)
    assert "rolling:imageTag 'latest' is not allowed" in message
    assert "rolling:replicas 0 is too small" in message


def test_schema_is_the_declarations() -> None:
    """Pulumi.yaml declares exactly the program's keys, each with the declaration's type, default and text."""
    declared = schema()
    assert list(declared) == [d.key for d in settings.declarations()]
    for d in settings.declarations():
        assert declared[d.key] == d.schema(), d.key
        assert declared[d.key]["type"] in ("string", "integer", "boolean"), d.key
        assert str(declared[d.key]["description"]).strip(), d.key
        assert ("default" in declared[d.key]) is not d.required, d.key
    # The file is exactly what `python -m infra.settings` writes: quoting and order included.
    text = (ROOT / "Pulumi.yaml").read_text()
    assert text[text.index("\nconfig:\n") + 1 :] == settings.schema_yaml()


def table_in(document: str) -> str:
    text = (ROOT / document).read_text()
    return text[text.index(settings.TABLE_BEGIN) : text.index(settings.TABLE_END) + len(settings.TABLE_END)]


def test_the_configuration_tables_are_the_declarations() -> None:
    regenerate = "run `python -m infra.settings` to regenerate it"
    assert table_in("docs/configuration.md") == settings.readme_table(), regenerate
    assert table_in("README.md") == settings.readme_table(settings.EXCERPT_KEYS), regenerate
    # The whole table has every key; the README's excerpt the few it names, each a real key.
    assert table_in("docs/configuration.md").count("\n| `") == len(settings.declarations())
    assert table_in("README.md").count("\n| `") == len(settings.EXCERPT_KEYS)


def test_every_declared_key_reaches_its_field() -> None:
    """Each key set to a valid non-default value comes out in the field its declaration names."""
    samples = NON_DEFAULT
    together = {"target": "eks", **{k: v for k, v in samples.items() if k not in APART}}
    loaded = settings.Settings.from_values(together)
    assert loaded.eks is not None
    for d in settings.declarations():
        if d.key in ("target", "kubeconfig"):
            continue
        apart = (
            settings.Settings.from_values({**together, d.key: samples[d.key], **APART[d.key]})
            if d.key in APART
            else None
        )
        holder = (apart or loaded).eks if d.eks_only else (apart or loaded)
        value = getattr(holder, d.field)
        assert value == d.parse(samples[d.key]) or d.key == "fargateNamespaces", d.key
        assert str(samples[d.key]) != str(d.default), f"pick a non-default sample for {d.key}"
    assert loaded.eks.fargate_namespaces == ("web", "kube-system")


def test_stack_files_hold_valid_config() -> None:
    from infra.settings import Settings

    for stack in ("dev", "prod", "local"):
        config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
        values = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("rolling:")}
        assert all(isinstance(v, str) for v in values.values()), "quote values in stack files"
        Settings.from_values(values)
    dev = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    assert dev["aws:region"] == "ap-northeast-2"
    assert dev["rolling:target"] == "eks"
    # git does not say which image runs in a CI-driven stack: the deploy pipeline's last shipment does.
    assert "rolling:imageTag" not in dev


def test_local_target_does_not_import_aws_sdks() -> None:
    code = (
        "import sys, asyncio\n"
        "from tests.unit.harness import fresh_runtime, run_program\n"
        "run_program({'target': 'local', 'imageTag': '1.14.2'})\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pulumi_aws', 'pulumi_eks'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
