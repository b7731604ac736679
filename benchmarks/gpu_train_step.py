"""Training-step throughput of a DLRM-DCNv2-style ranker on one GPU, with python3 and torch only.

Self-contained on purpose (no project imports, no Ray): the GPU machines we benchmark on have
torch but no Ray, Dagster or package index. The model mirrors ``QuestRanker`` with
``interaction="dcn"``: one ``EmbeddingBag`` per sparse feature (multi-hot bags pooled), a bottom
MLP for dense features, DCN-v2 cross layers (low rank) and a top MLP; bf16 autocast on GPU;
fused Adam on the dense layers and sparse SGD on the tables (what large DLRM trainers do: row-
sparse updates, no optimizer state for billions of rows).

It prints:

* samples/s of the full training step (forward, backward, optimizer) for the stated model size;
* embedding lookup bandwidth: bytes of embedding rows gathered per second by ``EmbeddingBag``
  forward over large tables with random ids, as a fraction of the GPU's peak memory bandwidth
  (looked up from the device name).

Anchor: MLPerf-class DLRM-DCNv2 implementations reach about 1.8M samples/s per H100 (Criteo
1TB, 26 tables, dim 128, hand-fused kernels). This plain-PyTorch loop is expected to land well
below that; the figure says how far.

    python3 benchmarks/gpu_train_step.py                     # defaults: GPU-sized model if a GPU is present
    python3 benchmarks/gpu_train_step.py --batch-size 65536 --rows-per-table 4000000
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import torch
from torch import nn

# Peak memory bandwidth by device name fragment, TB/s (vendor figures).
PEAK_TBPS = [
    ("H200", 4.8),
    ("H100 PCIe", 2.0),
    ("H100 NVL", 3.9),
    ("H100", 3.35),  # SXM
    ("GH200", 4.0),
    ("B200", 8.0),
    ("A100-SXM4-80GB", 2.039),
    ("A100 80GB", 1.935),
    ("A100", 1.555),  # 40GB
    ("L40S", 0.864),
    ("L4", 0.3),
    ("A10G", 0.6),
    ("A10", 0.6),
    ("V100", 0.9),
    ("T4", 0.32),
]


def peak_bandwidth_tbps(name: str) -> float | None:
    """Peak memory bandwidth of a GPU from its name (None when unknown)."""
    for fragment, tbps in PEAK_TBPS:
        if fragment.lower() in name.lower():
            return tbps
    return None


class CrossNet(nn.Module):
    def __init__(self, width: int, layers: int, rank: int) -> None:
        super().__init__()
        self.u = nn.ModuleList(nn.Linear(width, rank, bias=False) for _ in range(layers))
        self.v = nn.ModuleList(nn.Linear(rank, width) for _ in range(layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for u, v in zip(self.u, self.v, strict=True):
            x = x0 * v(u(x)) + x
        return x


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class Ranker(nn.Module):
    def __init__(self, tables: int, rows: int, dim: int, dense: int, bottom: list[int], top: list[int], cross_layers: int, cross_rank: int) -> None:
        super().__init__()
        self.tables = nn.ModuleList(nn.EmbeddingBag(rows, dim, mode="sum", sparse=True) for _ in range(tables))
        self.bottom = mlp([dense, *bottom, dim])
        width = (tables + 1) * dim
        self.cross = CrossNet(width, cross_layers, cross_rank)
        self.top = mlp([width, *top, 1])

    def forward(self, dense: torch.Tensor, ids: list[torch.Tensor], offsets: list[torch.Tensor]) -> torch.Tensor:
        vectors = [self.bottom(dense)] + [t(i, o) for t, i, o in zip(self.tables, ids, offsets, strict=True)]
        return self.top(self.cross(torch.cat(vectors, dim=1))).squeeze(-1)


def make_batch(args: argparse.Namespace, device: torch.device, gen: torch.Generator):
    b = args.batch_size
    dense = torch.randn(b, args.dense, device=device, generator=gen)
    labels = (torch.rand(b, device=device, generator=gen) < 0.1).float()
    ids, offsets = [], []
    for _ in range(args.tables):
        ids.append(torch.randint(0, args.rows_per_table, (b * args.hotness,), device=device, generator=gen))
        offsets.append(torch.arange(0, b * args.hotness, args.hotness, device=device))
    return dense, ids, offsets, labels


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step_throughput(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    model = Ranker(args.tables, args.rows_per_table, args.dim, args.dense, args.bottom, args.top, args.cross_layers, args.cross_rank).to(device)
    dense_params = [p for n, p in model.named_parameters() if not n.startswith("tables.")]
    table_params = [p for n, p in model.named_parameters() if n.startswith("tables.")]
    fused = {"fused": True} if device.type == "cuda" else {}
    dense_opt = torch.optim.Adam(dense_params, lr=1e-3, **fused)
    sparse_opt = torch.optim.SGD(table_params, lr=0.01)
    gen = torch.Generator(device=device).manual_seed(0)
    batches = [make_batch(args, device, gen) for _ in range(4)]
    loss_fn = nn.BCEWithLogitsLoss()
    amp = device.type == "cuda"

    def step(batch) -> torch.Tensor:
        dense, ids, offsets, labels = batch
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(dense, ids, offsets)
        loss = loss_fn(logits.float(), labels)
        dense_opt.zero_grad(set_to_none=True)
        sparse_opt.zero_grad(set_to_none=True)
        loss.backward()
        dense_opt.step()
        sparse_opt.step()
        return loss

    for i in range(args.warmup):
        step(batches[i % len(batches)])
    sync(device)
    started = time.perf_counter()
    for i in range(args.steps):
        step(batches[i % len(batches)])
    sync(device)
    seconds = time.perf_counter() - started
    params = sum(p.numel() for p in model.parameters())
    return {
        "samples_per_second": args.batch_size * args.steps / seconds,
        "step_ms": 1000 * seconds / args.steps,
        "parameters": float(params),
        "embedding_parameters": float(sum(p.numel() for p in table_params)),
        "model_gib_fp32": params * 4 / 1024**3,
    }


def lookup_bandwidth(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Bytes of rows gathered per second by EmbeddingBag forward (random ids, sum pooling)."""
    table = nn.EmbeddingBag(args.bw_rows, args.bw_dim, mode="sum").to(device)
    lookups = args.bw_lookups
    hot = args.hotness
    gen = torch.Generator(device=device).manual_seed(1)
    ids = torch.randint(0, args.bw_rows, (lookups,), device=device, generator=gen)
    offsets = torch.arange(0, lookups, hot, device=device)
    with torch.no_grad():
        for _ in range(3):
            table(ids, offsets)
        sync(device)
        started = time.perf_counter()
        for _ in range(args.bw_iters):
            table(ids, offsets)
        sync(device)
    seconds = time.perf_counter() - started
    # Each lookup reads one row (dim * 4 bytes); ids and the pooled output are small beside it.
    bytes_read = args.bw_iters * lookups * args.bw_dim * 4
    return {"lookup_gbps": bytes_read / seconds / 1e9, "table_gib": args.bw_rows * args.bw_dim * 4 / 1024**3}


def main() -> None:
    gpu = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=26)
    parser.add_argument("--rows-per-table", type=int, default=1_000_000 if gpu else 20_000)
    parser.add_argument("--dim", type=int, default=128 if gpu else 16)
    parser.add_argument("--hotness", type=int, default=1, help="Ids per bag (1 = one-hot).")
    parser.add_argument("--dense", type=int, default=13)
    parser.add_argument("--bottom", type=int, nargs="+", default=[512, 256] if gpu else [64])
    parser.add_argument("--top", type=int, nargs="+", default=[1024, 1024, 512, 256] if gpu else [64, 32])
    parser.add_argument("--cross-layers", type=int, default=3)
    parser.add_argument("--cross-rank", type=int, default=512 if gpu else 16)
    parser.add_argument("--batch-size", type=int, default=65_536 if gpu else 1024)
    parser.add_argument("--steps", type=int, default=50 if gpu else 10)
    parser.add_argument("--warmup", type=int, default=10 if gpu else 2)
    parser.add_argument("--bw-rows", type=int, default=40_000_000 if gpu else 1_000_000)
    parser.add_argument("--bw-dim", type=int, default=128 if gpu else 64)
    parser.add_argument("--bw-lookups", type=int, default=4_194_304 if gpu else 262_144)
    parser.add_argument("--bw-iters", type=int, default=50 if gpu else 5)
    parser.add_argument("--json", action="store_true", help="Print one JSON line of the figures too.")
    args = parser.parse_args()

    device = torch.device("cuda" if gpu else "cpu")
    name = torch.cuda.get_device_name(device) if gpu else "cpu"
    print(f"torch {torch.__version__}; device: {name}" + ("" if gpu else " (no GPU present: small CPU sizes, figures are not GPU figures)"))
    print(f"model: {args.tables} tables x {args.rows_per_table:,} rows x dim {args.dim} (hotness {args.hotness}), "
          f"{args.dense} dense, bottom {args.bottom}, DCN-v2 {args.cross_layers} layers rank {args.cross_rank}, top {args.top}; "
          f"batch {args.batch_size:,}" + ("; bf16 autocast" if gpu else ""))
    step = train_step_throughput(args, device)
    print(f"train step: {step['samples_per_second']:,.0f} samples/s ({step['step_ms']:.1f} ms/step), "
          f"{step['parameters'] / 1e6:.1f}M parameters ({step['model_gib_fp32']:.2f} GiB fp32)")
    if gpu:
        print(f"  vs MLPerf-class DLRM-DCNv2 anchor ~1.8M samples/s per H100: {step['samples_per_second'] / 1.8e6:.2f}x")
    bw = lookup_bandwidth(args, device)
    peak = peak_bandwidth_tbps(name) if gpu else None
    line = f"embedding lookup: {bw['lookup_gbps']:.1f} GB/s of rows gathered ({args.bw_rows:,} x {args.bw_dim} table, {bw['table_gib']:.1f} GiB)"
    if peak:
        line += f" = {bw['lookup_gbps'] / (peak * 1000):.1%} of {name}'s {peak} TB/s peak"
    elif gpu:
        line += f" (peak bandwidth of {name!r} unknown)"
    print(line)
    if args.json:
        print(json.dumps({"device": name, **step, **bw, "peak_tbps": peak}))


if __name__ == "__main__":
    main()
