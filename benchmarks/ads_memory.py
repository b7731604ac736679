"""Parameter and optimizer memory per worker with sharded embedding tables, for 1, 2 and N workers.

Sharding exists to cut memory: each worker should hold about 1/N of the embedding rows. For each
worker count and mode this builds every rank's actual shards in one process (no process group
is needed to build them), takes one AdamW step so the optimizer state exists, and measures the
bytes of parameters and optimizer state per worker. ``none`` is plain DDP (every worker holds
every table). A second table gives the analytic figures for a production-sized model.

    python benchmarks/ads_memory.py --workers 1 2 4 8
"""

from __future__ import annotations

import argparse

import torch

MiB = 1024**2


def measured(config, world_size: int, mode: str) -> list[dict[str, float]]:
    from discord_ml_platform.ads.model import QuestRanker
    from discord_ml_platform.ads.sharding import ShardedEmbeddingCollection, plan_sharding

    out = []
    dense = QuestRanker(config, with_tables=False)
    dense_bytes = sum(p.numel() * p.element_size() for p in dense.parameters())
    for rank in range(world_size):
        if mode == "none" or world_size == 1:
            module: torch.nn.Module = QuestRanker(config)
        else:
            plan = plan_sharding(config.cardinalities, world_size, mode)  # type: ignore[arg-type]
            module = torch.nn.ModuleDict({
                "embeddings": ShardedEmbeddingCollection(config, plan, rank),
                "dense": QuestRanker(config, with_tables=False),
            })
        params = list(module.parameters())
        optimizer = torch.optim.AdamW(params, lr=1e-3)
        for p in params:
            p.grad = torch.zeros_like(p)
        optimizer.step()
        param_bytes = sum(p.numel() * p.element_size() for p in params)
        opt_bytes = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t) and t.dim() > 0)
        out.append({"param_mib": param_bytes / MiB, "optimizer_mib": opt_bytes / MiB, "dense_mib": dense_bytes / MiB})
        del module, optimizer, params
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()

    from discord_ml_platform.ads.model import RankerConfig
    from discord_ml_platform.ads.schema import quest_feature_schema
    from discord_ml_platform.ads.sharding import shard_memory

    config = RankerConfig()
    rows = sum(config.cardinalities.values())
    print(f"Reference model (default schema): {rows:,} embedding rows x dim {config.embedding_dim}, fp32, AdamW")
    print(f"{'mode':6s} {'workers':>7s} {'params MiB/worker (max)':>24s} {'optimizer MiB/worker (max)':>27s} {'total MiB (max)':>16s} {'vs 1 worker':>12s}")
    base = None
    for mode in ("none", "table", "row"):
        for w in args.workers:
            m = measured(config, w, mode)
            worst = max(m, key=lambda r: r["param_mib"] + r["optimizer_mib"])
            total = worst["param_mib"] + worst["optimizer_mib"]
            base = base or total
            print(f"{mode:6s} {w:7d} {worst['param_mib']:24.2f} {worst['optimizer_mib']:27.2f} {total:16.2f} {total / base:12.3f}")

    big = RankerConfig(embedding_dim=64, feature_schema=quest_feature_schema(num_users=50_000_000, num_games=200_000, num_guilds=20_000_000, quest_table_size=65_536))
    big_rows = sum(big.cardinalities.values())
    print(f"\nProduction-sized (analytic): {big_rows:,} rows x dim 64 = {big_rows * 64 * 4 / 1024**3:.1f} GiB of fp32 tables, AdamW")
    print(f"{'mode':6s} {'workers':>7s} {'params GiB/worker (max)':>24s} {'optimizer GiB/worker (max)':>27s} {'fits an 80 GB GPU':>18s}")
    for mode in ("none", "table", "row"):
        for w in args.workers:
            per = shard_memory(big, w, mode)  # type: ignore[arg-type]
            worst = max(per, key=lambda r: r["total_bytes"])
            params = (worst["embedding_bytes"] + worst["dense_bytes"]) / 1024**3
            opt = worst["optimizer_bytes"] / 1024**3
            print(f"{mode:6s} {w:7d} {params:24.2f} {opt:27.2f} {'yes' if params + opt < 70 else 'no':>18s}")


if __name__ == "__main__":
    main()
