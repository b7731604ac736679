"""Samples a Ray cluster's resource use while a job runs, from the dashboard's node summary.

The node summary (the data behind the dashboard's Cluster tab) carries per-node CPU percent,
memory, and per-GPU utilisation and memory when the node has GPUs; one HTTP call per sample covers
every node, so sampling every second costs the cluster nothing noticeable.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Self


@dataclass
class UsageSample:
    """One reading across all nodes."""

    at: float
    cpu_percent: float  # mean over nodes, 0..100
    memory_used_bytes: int  # sum over nodes
    object_store_used_bytes: int
    gpu_percent: float | None  # mean over GPUs, None without GPUs
    gpu_memory_used_bytes: int | None
    nodes: int


def read_usage(dashboard_url: str, timeout_s: float = 2) -> UsageSample:
    """Read one usage sample from ``<dashboard>/nodes?view=summary``."""
    with urllib.request.urlopen(f"{dashboard_url}/nodes?view=summary", timeout=timeout_s) as response:
        nodes = json.load(response)["data"]["summary"]
    cpus, gpus = [], []
    memory = store = gpu_memory = 0
    for node in nodes:
        cpus.append(float(node.get("cpu", 0.0)))
        mem = node.get("mem") or [0, 0, 0, 0]
        memory += int(mem[3]) if len(mem) > 3 else int(mem[0] - mem[1])
        store += int(node.get("raylet", {}).get("objectStoreUsedMemory", 0) or 0)
        for gpu in node.get("gpus") or []:
            gpus.append(float(gpu.get("utilizationGpu") or 0.0))
            gpu_memory += int(gpu.get("memoryUsed") or 0) * 2**20  # reported in MiB
    return UsageSample(
        at=time.time(),
        cpu_percent=statistics.fmean(cpus) if cpus else 0.0,
        memory_used_bytes=memory,
        object_store_used_bytes=store,
        gpu_percent=statistics.fmean(gpus) if gpus else None,
        gpu_memory_used_bytes=gpu_memory if gpus else None,
        nodes=len(nodes),
    )


@dataclass
class UsageSampler:
    """Background sampler; ``summary()`` gives means and peaks for materialization metadata."""

    dashboard_url: str
    interval_s: float = 1.0
    samples: list[UsageSample] = field(default_factory=list)
    errors: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ray-usage-sampler", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(read_usage(self.dashboard_url))
            except (OSError, ValueError, KeyError):
                self.errors += 1
            self._stop.wait(self.interval_s)

    def summary(self) -> dict[str, float | int | None]:
        """Mean and peak CPU/GPU utilisation and peak memory over the samples taken."""
        if not self.samples:
            return {"usage_samples": 0}
        cpu = [s.cpu_percent for s in self.samples]
        gpu = [s.gpu_percent for s in self.samples if s.gpu_percent is not None]
        gpu_mem = [s.gpu_memory_used_bytes for s in self.samples if s.gpu_memory_used_bytes is not None]
        return {
            "usage_samples": len(self.samples),
            "cpu_util_mean_pct": round(statistics.fmean(cpu), 1),
            "cpu_util_max_pct": round(max(cpu), 1),
            "memory_peak_bytes": max(s.memory_used_bytes for s in self.samples),
            "object_store_peak_bytes": max(s.object_store_used_bytes for s in self.samples),
            "gpu_util_mean_pct": round(statistics.fmean(gpu), 1) if gpu else None,
            "gpu_util_max_pct": round(max(gpu), 1) if gpu else None,
            "gpu_memory_peak_bytes": max(gpu_mem) if gpu_mem else None,
            "nodes": max(s.nodes for s in self.samples),
        }
