"""Sharded embeddings: plans, memory, and one step on 2 gloo workers == one unsharded step.

The equivalence test spawns two plain processes (``torch.multiprocessing``, no Ray), gives each
half of one global batch, and checks that the loss and every updated parameter (the gathered
table shards and the DDP dense layers) match the unsharded model trained on the whole batch.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from discord_ml_platform.ads.data import QuestWorld, WorldConfig, generate_window
from discord_ml_platform.ads.features import LABEL_KEY, encode_frame
from discord_ml_platform.ads.model import QuestRanker, RankerConfig
from discord_ml_platform.ads.sharding import plan_sharding, shard_memory

pytestmark = pytest.mark.timeout(240)

ROWS_PER_RANK = 96


def _tiny_setup() -> tuple[RankerConfig, dict[str, np.ndarray] | None, object]:
    world = QuestWorld.from_seed(3, WorldConfig(num_users=500, num_games=200, num_guilds=300))
    frame = generate_window(dt.date(2025, 6, 1), 2 * ROWS_PER_RANK, world=world)
    frame.loc[frame.index[:3], "guild_ids"] = None  # empty bags must pool to zeros on both paths
    config = RankerConfig.from_schema(world.schema, embedding_dim=8, bottom_mlp=(8,), top_mlp=(16,))
    return config, None, encode_frame(frame, world.schema)


def _step(model: torch.nn.Module, batch: dict[str, torch.Tensor], params: list) -> float:
    optimizer = torch.optim.AdamW(params, lr=0.05, weight_decay=0.0)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch), batch[LABEL_KEY])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _worker(rank: int, world_size: int, port: int, mode: str, out_dir: str) -> None:
    import torch.distributed as dist

    from discord_ml_platform.ads.sharding import ShardedQuestRanker

    torch.set_num_threads(1)
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        config, _, encoded = _tiny_setup()
        torch.manual_seed(0)
        full = QuestRanker(config).state_dict()
        model = ShardedQuestRanker(config, mode, rank, world_size, "cpu", full)  # type: ignore[arg-type]
        rows = np.arange(rank * ROWS_PER_RANK, (rank + 1) * ROWS_PER_RANK)
        local_loss = _step(model, encoded.batch(rows), list(model.parameters()))
        losses = [None] * world_size
        dist.all_gather_object(losses, local_loss)
        state = model.full_state_dict()
        held_rows = sum(p.shape[0] for p in model.embedding_parameters())
        if rank == 0:
            torch.save({"state": state, "losses": losses}, Path(out_dir) / "sharded.pt")
        torch.save({"rows": held_rows}, Path(out_dir) / f"rows-{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("mode", ["table", "row"])
def test_two_workers_match_unsharded_step(mode: str, tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, _free_port(), mode, str(tmp_path)), nprocs=2, join=True)
    sharded = torch.load(tmp_path / "sharded.pt", weights_only=False)

    config, _, encoded = _tiny_setup()
    torch.manual_seed(0)
    reference = QuestRanker(config)
    initial = {k: v.clone() for k, v in reference.state_dict().items()}
    global_loss = _step(reference, encoded.batch(np.arange(2 * ROWS_PER_RANK)), list(reference.parameters()))

    # The global mean loss is the mean of the two equal-sized local means.
    assert np.mean(sharded["losses"]) == pytest.approx(global_loss, rel=1e-5)
    state = sharded["state"]
    assert set(state) == set(reference.state_dict())
    for name, expected in reference.state_dict().items():
        torch.testing.assert_close(state[name], expected, rtol=1e-4, atol=1e-6, msg=f"{mode}: {name} differs")
    # The step moved the tables (so the comparison above is not vacuous).
    assert not torch.allclose(state["tables.user.weight"], initial["tables.user.weight"])
    # Each worker held part of the rows, together all of them.
    held = [torch.load(tmp_path / f"rows-{r}.pt")["rows"] for r in range(2)]
    assert sum(held) == sum(config.cardinalities.values())
    assert max(held) < sum(config.cardinalities.values())


def test_plans_cover_every_row_once() -> None:
    sizes = {"user": 65_536, "quest": 4_096, "game": 2_048, "guild": 16_384, "platform": 5, "hour": 24}
    for mode in ("table", "row"):
        for world_size in (1, 2, 3, 8):
            plan = plan_sharding(sizes, world_size, mode)  # type: ignore[arg-type]
            assert sum(plan.rows_on(r) for r in range(world_size)) == sum(sizes.values())
            for table, shards in plan.shards.items():
                assert shards[0].row_start == 0 and shards[-1].row_end == sizes[table]
                assert all(a.row_end == b.row_start for a, b in itertools.pairwise(shards))
    row8 = plan_sharding(sizes, 8, "row")
    per_rank = [row8.rows_on(r) for r in range(8)]
    assert max(per_rank) - min(per_rank) <= len(sizes)  # row-wise is balanced to a row per table


def test_memory_per_worker_shrinks_with_workers() -> None:
    config = RankerConfig()
    one = shard_memory(config, 1, "row")[0]
    two = shard_memory(config, 2, "row")
    eight = shard_memory(config, 8, "row")
    assert two[0]["embedding_bytes"] == pytest.approx(one["embedding_bytes"] / 2, rel=0.01)
    assert max(m["embedding_bytes"] for m in eight) == pytest.approx(one["embedding_bytes"] / 8, rel=0.01)
    assert shard_memory(config, 8, "none")[0]["total_bytes"] == one["total_bytes"]


def _torchrun_worker(rank: int, world_size: int, port: int, config: dict) -> None:
    """What ``torchrun`` gives a worker: env vars; the loop creates the gloo group itself."""
    import torch.distributed as dist

    from discord_ml_platform.ads.train import train_loop_per_worker

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size)})
    try:
        train_loop_per_worker(config)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_sharded_training_loop_under_torchrun_style_launch_checkpoints_and_resumes(windows, small_world, tmp_path) -> None:
    import torch.multiprocessing as mp

    from discord_ml_platform.ads.model import load_model
    from discord_ml_platform.ads.reporting import load_train_state
    from discord_ml_platform.ads.train import TrainLoopConfig

    ckpt = tmp_path / "ckpt"
    config = TrainLoopConfig(
        train_path=str(windows["train"]), validation_path=str(windows["validation"]), epochs=1, batch_size=256,
        max_train_rows=3_000, max_validation_rows=1_001, torch_threads=1, emit_pipes_metrics=False,
        model=RankerConfig.from_schema(small_world.schema, embedding_dim=8), sharding="table",
        checkpoint={"local_dir": str(ckpt)},
    )
    mp.spawn(_torchrun_worker, args=(2, _free_port(), config.model_dump(mode="json")), nprocs=2, join=True)
    state = load_train_state(ckpt / "epoch=0000")
    assert state["world_size"] == 2 and state["sharding"] == "table" and len(state["optimizer_shards"]) == 2
    assert load_model(ckpt / "epoch=0000") is not None  # the gathered, unsharded model
    # One more epoch: both workers restore epoch 0 (model + their own optimizer shard) and go on.
    resumed = config.model_copy(update={"epochs": 2})
    mp.spawn(_torchrun_worker, args=(2, _free_port(), resumed.model_dump(mode="json")), nprocs=2, join=True)
    assert sorted(p.name for p in ckpt.iterdir()) == ["epoch=0000", "epoch=0001"]
