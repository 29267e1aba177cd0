"""The unit tier's harness: the package's mock runner (infra.offline)."""

from infra.offline import FAKE_KUBECONFIG, ZONES, Recorder, Resource, Run, fresh_runtime, run_program, unwrap

__all__ = ["FAKE_KUBECONFIG", "ZONES", "Recorder", "Resource", "Run", "fresh_runtime", "run_program", "unwrap"]
