"""``dmp gpus``: the GPU catalog in effect (built-in, extended by ``$DMP_PLATFORM_CONFIG``), from the core."""

from __future__ import annotations

from typing import Any

from discord_ml_platform.cli.output import OutputFormat, OutputOpt, print_rows
from discord_ml_platform.cli.settings import cli_platform

COLUMNS = (
    ("name", "NAME"),
    ("gpu_memory", "GPU MEMORY"),
    ("cpus_per_gpu", "CPUS/GPU"),
    ("memory_per_gpu", "MEMORY/GPU"),
    ("max_gpus_per_node", "MAX GPUS/NODE"),
    ("price", "$/GPU-HOUR"),
    ("selector", "NODE SELECTOR"),
)
EPILOG = (
    "Examples:\n\n  dmp gpus\n\n  dmp gpus -o json | jq '.[] | select(.gpu_memory_gib >= 80) | .name'\n\n"
    "  DMP_PLATFORM_CONFIG=platform.yaml dmp gpus   (with the platform team's overrides)"
)


def gpus(output: OutputOpt = OutputFormat.table) -> None:
    """List the GPU types clusters can use: memory, default CPUs and memory per GPU, price, node selector.

    On the cpu pool the per-GPU defaults are per worker and the price is per node-hour.
    """
    platform = cli_platform()
    rows: list[dict[str, Any]] = []
    cells: list[dict[str, Any]] = []
    for gpu in platform.catalog.types.values():
        row = {
            "name": gpu.name,
            "has_gpus": gpu.has_gpus,
            "gpu_memory_gib": gpu.gpu_memory_gib,
            "cpus_per_gpu": gpu.cpus_per_gpu,
            "memory_per_gpu": gpu.memory_per_gpu,
            "max_gpus_per_node": gpu.max_gpus_per_node,
            "hourly_price_usd": gpu.hourly_price_usd,
            "resource_name": gpu.resource_name,
            "node_selector": dict(gpu.node_selector),
            "tolerations": [t.to_manifest() for t in gpu.tolerations],
            # What a cluster on this pool runs unless it names an image: the pool's, else the platform's.
            "image": platform.images.for_pool(gpu),
        }
        rows.append(row)
        cells.append(
            {
                **row,
                "gpu_memory": f"{gpu.gpu_memory_gib} GiB" if gpu.has_gpus else "-",
                "price": f"${gpu.hourly_price_usd:,.2f}" + ("" if gpu.has_gpus else " /node"),
                "selector": ",".join(f"{k}={v}" for k, v in gpu.node_selector.items()) or "-",
            }
        )
    print_rows(rows, COLUMNS, output, cells=cells, empty="the catalog is empty")
