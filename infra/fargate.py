"""Fargate pod sizes: which cpu/memory requests Fargate can run, and what it bills (no Pulumi here)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Fargate reserves this much memory on every pod for the kubelet, kube-proxy
# and containerd, on top of the containers' requests, before picking a size.
OVERHEAD_MIB = 256

# vCPU (in millicores) -> the memory sizes (MiB) Fargate offers with it.
_GIB = 1024
SIZES: dict[int, tuple[int, ...]] = {
    250: (512, 1 * _GIB, 2 * _GIB),
    500: tuple(g * _GIB for g in range(1, 5)),
    1000: tuple(g * _GIB for g in range(2, 9)),
    2000: tuple(g * _GIB for g in range(4, 17)),
    4000: tuple(g * _GIB for g in range(8, 31)),
    8000: tuple(g * _GIB for g in range(16, 61, 4)),
    16000: tuple(g * _GIB for g in range(32, 121, 8)),
}

_CPU_RE = re.compile(r"(?:(\d+)m|(\d+(?:\.\d+)?))")
_MEM_RE = re.compile(r"(\d+)(Mi|Gi)")


class SizeError(ValueError):
    """A cpu or memory value Kubernetes or Fargate would not accept."""


@dataclass(frozen=True)
class PodSize:
    """The Fargate size a pod is billed at."""

    cpu_millis: int
    memory_mib: int

    def __str__(self) -> str:
        return f"{self.cpu_millis / 1000:g} vCPU / {self.memory_mib / _GIB:g} GB"


def parse_cpu(value: str) -> int:
    """Millicores from a Kubernetes cpu quantity such as ``250m``, ``0.5`` or ``2``."""
    match = _CPU_RE.fullmatch(value.strip())
    if not match:
        raise SizeError(f"'{value}' is not a cpu quantity: use millicores such as 250m or vCPUs such as 0.5")
    if match.group(1) is not None:
        return int(match.group(1))
    millis = float(match.group(2)) * 1000
    if millis != int(millis):
        raise SizeError(f"'{value}' is finer than a millicore")
    return int(millis)


def parse_memory(value: str) -> int:
    """MiB from a Kubernetes memory quantity in ``Mi`` or ``Gi``."""
    match = _MEM_RE.fullmatch(value.strip())
    if not match:
        raise SizeError(f"'{value}' is not a memory quantity: use Mi or Gi, such as 512Mi or 2Gi")
    amount = int(match.group(1))
    return amount * _GIB if match.group(2) == "Gi" else amount


def pod_size(cpu_millis: int, memory_mib: int) -> PodSize:
    """The Fargate size for a pod whose containers request exactly this cpu and memory.

    The cpu must be one of Fargate's vCPU values, so requests equal what is billed;
    memory plus Fargate's overhead must fit one of the sizes offered with that cpu.
    """
    if cpu_millis not in SIZES:
        offered = ", ".join(f"{c}m" for c in SIZES)
        raise SizeError(f"cpu {cpu_millis}m is not a Fargate vCPU size; use one of {offered}")
    if memory_mib <= 0:
        raise SizeError("memory must be more than 0")
    need = memory_mib + OVERHEAD_MIB
    for size in SIZES[cpu_millis]:
        if need <= size:
            return PodSize(cpu_millis, size)
    largest = SIZES[cpu_millis][-1] - OVERHEAD_MIB
    raise SizeError(
        f"memory {memory_mib}Mi with cpu {cpu_millis}m does not fit a Fargate size: with "
        f"{OVERHEAD_MIB}Mi of Fargate overhead, {cpu_millis}m takes at most {largest}Mi; raise cpu or lower memory"
    )
