"""The unit tier's harness: the program under Pulumi's mocks (rigs/offline.py)."""

from rigs.offline import FAKE_KUBECONFIG, ZONES, Recorder, Resource, Run, fresh_runtime, run_program, unwrap

__all__ = ["FAKE_KUBECONFIG", "ZONES", "Recorder", "Resource", "Run", "fresh_runtime", "run_program", "unwrap"]
