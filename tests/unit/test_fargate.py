"""Fargate sizing: which requests run, and the size they are billed at."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra import fargate


@pytest.mark.parametrize(
    ("cpu", "memory", "size"),
    [
        ("250m", "256Mi", "0.25 vCPU / 0.5 GB"),
        ("250m", "512Mi", "0.25 vCPU / 1 GB"),
        ("0.5", "1Gi", "0.5 vCPU / 2 GB"),
        ("1", "2Gi", "1 vCPU / 3 GB"),
        ("16", "100Gi", "16 vCPU / 104 GB"),
    ],
)
def test_pod_size(cpu: str, memory: str, size: str) -> None:
    assert str(fargate.pod_size(fargate.parse_cpu(cpu), fargate.parse_memory(memory))) == size


@pytest.mark.parametrize(("cpu", "memory"), [(300, 512), (250, 2048), (1000, 8192), (250, 0)])
def test_sizes_fargate_cannot_run(cpu: int, memory: int) -> None:
    with pytest.raises(fargate.SizeError):
        fargate.pod_size(cpu, memory)


@given(st.sampled_from(sorted(fargate.SIZES)), st.integers(min_value=1, max_value=130 * 1024))
def test_size_always_fits_request_plus_overhead(cpu: int, memory: int) -> None:
    try:
        size = fargate.pod_size(cpu, memory)
    except fargate.SizeError:
        assert memory + fargate.OVERHEAD_MIB > fargate.SIZES[cpu][-1]
        return
    assert size.cpu_millis == cpu
    assert size.memory_mib in fargate.SIZES[cpu]
    assert size.memory_mib >= memory + fargate.OVERHEAD_MIB
    smaller = [m for m in fargate.SIZES[cpu] if m < size.memory_mib]
    assert all(m < memory + fargate.OVERHEAD_MIB for m in smaller), "not the smallest size that fits"


@pytest.mark.parametrize(("text", "millis"), [("250m", 250), ("0.25", 250), ("2", 2000), (" 1 ", 1000)])
def test_parse_cpu(text: str, millis: int) -> None:
    assert fargate.parse_cpu(text) == millis


@pytest.mark.parametrize("text", ["0.0001", "1.5m", "", "2G"])
def test_parse_cpu_refuses(text: str) -> None:
    with pytest.raises(fargate.SizeError):
        fargate.parse_cpu(text)
