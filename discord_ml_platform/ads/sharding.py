"""Model-parallel embedding tables: table-wise or row-wise shards exchanged with all-to-all.

DLRM-style hybrid parallelism in plain PyTorch (torchrec is not available on our GPU images):

* **Embedding tables are sharded** across the workers. *Table-wise*: each table lives whole on
  one worker (greedy balance by size). *Row-wise*: every table is split into ``world_size``
  contiguous row blocks, one per worker. Either way each worker holds about ``1/N`` of the rows.
* **Dense layers are data-parallel** (DDP): bottom MLP, interaction and top MLP are replicated.

One forward step on every worker, with its own local batch of ``B_r`` rows:

1. *Input all-to-all* (ids, no gradient): every (row, feature, id) triple goes to the worker that
   owns that id's row. ``all_to_all_single`` with uneven splits, after a small ``all_gather`` of
   the split sizes.
2. *Lookup*: the owner gathers the rows and sum-pools them per (source row, feature) into one
   partial vector per source worker, ``(B_src, features_on_owner, dim)``.
3. *Output all-to-all* (differentiable, :class:`_AllToAll`): partials go back to the rows'
   workers, which add the pieces (row-wise: a reduce-scatter done as all-to-all + sum) and divide
   by the bag length for mean pooling.

Backward runs the same output exchange in reverse (the gradient of an all-to-all is the
all-to-all with send and receive splits swapped), so each owner receives the gradients of its
rows from every worker. Gradients are scaled by ``1/world_size`` to match DDP's averaging of the
dense gradients: the step equals one unsharded step on the concatenated global batch.

Collectives: gloo on CPU (torch >= 2.x implements ``all_to_all_single`` with uneven splits),
NCCL on GPU. Nothing here knows about Ray: it needs an initialised default process group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from discord_ml_platform.ads.features import OFFSETS_SUFFIX
from discord_ml_platform.ads.model import QuestRanker, RankerConfig

ShardingMode = Literal["none", "table", "row"]


@dataclass(frozen=True)
class TableShard:
    """Rows ``[row_start, row_end)`` of table ``table`` held by worker ``rank``."""

    table: str
    rank: int
    row_start: int
    row_end: int

    @property
    def rows(self) -> int:
        """Rows in this shard."""
        return self.row_end - self.row_start


@dataclass(frozen=True)
class ShardingPlan:
    """Where every table's rows live.

    Attributes:
        mode: ``table`` or ``row``.
        world_size: Workers.
        shards: Per table, its shards in row order (one for table-wise, ``world_size`` for row-wise).
    """

    mode: Literal["table", "row"]
    world_size: int
    shards: dict[str, tuple[TableShard, ...]]

    def shards_on(self, rank: int) -> list[TableShard]:
        """Shards held by ``rank``."""
        return [s for shards in self.shards.values() for s in shards if s.rank == rank and s.rows > 0]

    def rows_on(self, rank: int) -> int:
        """Embedding rows held by ``rank``."""
        return sum(s.rows for s in self.shards_on(rank))


def plan_sharding(cardinalities: dict[str, int], world_size: int, mode: Literal["table", "row"]) -> ShardingPlan:
    """Place tables on workers.

    Table-wise: largest table first onto the least-loaded worker (so with fewer big tables than
    workers, some workers hold only small tables: row-wise balances better). Row-wise: each
    table cut into ``world_size`` near-equal contiguous blocks.

    Args:
        cardinalities: Rows per table.
        world_size: Workers.
        mode: ``table`` or ``row``.

    Returns:
        The plan.
    """
    if world_size < 1:
        raise ValueError("world_size must be >= 1")
    shards: dict[str, tuple[TableShard, ...]] = {}
    if mode == "table":
        load = [0] * world_size
        for name, rows in sorted(cardinalities.items(), key=lambda kv: (-kv[1], kv[0])):
            rank = min(range(world_size), key=lambda r: (load[r], r))
            load[rank] += rows
            shards[name] = (TableShard(name, rank, 0, rows),)
    elif mode == "row":
        for name, rows in cardinalities.items():
            bounds = [rows * r // world_size for r in range(world_size + 1)]
            shards[name] = tuple(TableShard(name, r, bounds[r], bounds[r + 1]) for r in range(world_size))
    else:
        raise ValueError(f"unknown sharding mode {mode!r}")
    return ShardingPlan(mode=mode, world_size=world_size, shards={k: shards[k] for k in cardinalities})


class _AllToAll(torch.autograd.Function):
    """Differentiable ``all_to_all_single`` of a flat tensor with uneven splits."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, send: list[int], recv: list[int], grad_scale: float) -> torch.Tensor:
        ctx.send, ctx.recv, ctx.grad_scale = send, recv, grad_scale
        out = x.new_empty((sum(recv), *x.shape[1:]))
        dist.all_to_all_single(out, x.contiguous(), output_split_sizes=recv, input_split_sizes=send)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        back = grad.new_empty((sum(ctx.send), *grad.shape[1:]))
        dist.all_to_all_single(back, grad.contiguous(), output_split_sizes=ctx.send, input_split_sizes=ctx.recv)
        if ctx.grad_scale != 1.0:
            back = back * ctx.grad_scale
        return back, None, None, None


def _all_to_all_ids(x: torch.Tensor, send: list[int], recv: list[int]) -> torch.Tensor:
    out = x.new_empty((sum(recv), *x.shape[1:]))
    dist.all_to_all_single(out, x.contiguous(), output_split_sizes=recv, input_split_sizes=send)
    return out


class ShardedEmbeddingCollection(nn.Module):
    """This worker's shards of the embedding tables, and the all-to-all lookups across workers.

    Args:
        config: Model config (features, tables, dim, pooling).
        plan: The sharding plan (same on every worker).
        rank: This worker's rank.
        device: Where the shards and the exchanged tensors live.
        full_tables: Optional ``{table: (rows, dim) weight}`` to slice the shards from (same init
            as an unsharded model); otherwise rows are drawn N(0, init_std).
    """

    def __init__(
        self,
        config: RankerConfig,
        plan: ShardingPlan,
        rank: int,
        device: torch.device | str = "cpu",
        full_tables: dict[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.plan = plan
        self.rank = rank
        self.world_size = plan.world_size
        self.dim = config.embedding_dim
        self.mean_pooling = config.bag_mode == "mean"
        schema = config.feature_schema
        self.features = [(f.name, f.table, f.kind == "multi_hot") for f in schema.sparse]
        self.table_sizes = schema.cardinalities
        self.shards = nn.ParameterDict()
        self._local: dict[str, TableShard] = {}
        for shard in plan.shards_on(rank):
            if full_tables is not None:
                weight = full_tables[shard.table][shard.row_start : shard.row_end].detach().clone()
            else:
                weight = torch.randn(shard.rows, self.dim) * config.init_std
            self.shards[shard.table] = nn.Parameter(weight.to(device))
            self._local[shard.table] = shard
        # Features that have a shard on each rank, in feature order: the slots of that rank's
        # partial outputs.
        self.slots_on = [
            [
                i
                for i, (_, table, _) in enumerate(self.features)
                if any(s.rank == r and s.rows > 0 for s in plan.shards[table])
            ]
            for r in range(self.world_size)
        ]
        # Row -> owner lookups per table: boundaries of the row blocks and their ranks.
        self._bounds = {
            t: (
                torch.tensor([s.row_end for s in shards]),
                torch.tensor([s.rank for s in shards]),
                torch.tensor([s.row_start for s in shards]),
            )
            for t, shards in plan.shards.items()
        }

    def _triples(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """``(owner, [sample, feature, local_row], bag lengths (B, F), B)`` of every id in the batch."""
        rows_b = batch[self.features[0][0]].new_empty(0)
        owners, samples, feats, locals_ = [], [], [], []
        n = None
        lengths = []
        for f, (name, table, multi_hot) in enumerate(self.features):
            ids = batch[name].remainder(self.table_sizes[table])
            if multi_hot:
                offsets = batch[name + OFFSETS_SUFFIX]
                n = offsets.numel() if n is None else n
                ends = torch.cat([offsets[1:], offsets.new_tensor([ids.numel()])])[: offsets.numel()]
                length = ends - offsets
                sample = torch.repeat_interleave(torch.arange(offsets.numel(), device=ids.device), length)
            else:
                n = ids.numel() if n is None else n
                length = torch.ones_like(ids)
                sample = torch.arange(ids.numel(), device=ids.device)
            lengths.append(length)
            ends_t, ranks_t, starts_t = (t.to(ids.device) for t in self._bounds[table])
            block = torch.searchsorted(ends_t, ids, right=True)
            owners.append(ranks_t[block])
            locals_.append(ids - starts_t[block])
            samples.append(sample)
            feats.append(torch.full_like(ids, f))
        del rows_b
        owner = torch.cat(owners)
        triples = torch.stack([torch.cat(samples), torch.cat(feats), torch.cat(locals_)], dim=1)
        return owner, triples, torch.stack(lengths, dim=1), int(n or 0)

    def forward(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Pooled vectors of this worker's rows, one ``(B, dim)`` per sparse feature (schema order).

        A collective: every worker must call it once per step, even with an empty batch.
        """
        W, me, D = self.world_size, self.rank, self.dim
        owner, triples, lengths, n = self._triples(batch)
        order = torch.argsort(owner, stable=True)
        triples = triples[order]
        send_ids = torch.bincount(owner, minlength=W)
        # Everyone learns every worker's batch size and id counts (W x (W + 1) ints).
        meta = torch.cat([send_ids, send_ids.new_tensor([n])]).to(triples.device)
        table = [torch.empty_like(meta) for _ in range(W)]
        dist.all_gather(table, meta)
        meta_all = torch.stack(table).cpu()
        counts, batch_sizes = meta_all[:, :W], meta_all[:, W].tolist()
        send = counts[me].tolist()
        recv = counts[:, me].tolist()
        got = _all_to_all_ids(triples, send, recv)

        # Owner side: partial sums per (source worker, source row, local slot).
        my_slots = self.slots_on[me]
        slot_of = torch.full((len(self.features),), -1, dtype=torch.long, device=got.device)
        slot_of[torch.tensor(my_slots, dtype=torch.long, device=got.device)] = torch.arange(
            len(my_slots), device=got.device
        )
        src_of = torch.repeat_interleave(torch.arange(W, device=got.device), torch.tensor(recv, device=got.device))
        row_base = torch.tensor([0, *batch_sizes], device=got.device).cumsum(0)[:-1]
        total_rows = sum(batch_sizes)
        F_me = len(my_slots)
        partial = None
        any_param = next(iter(self.shards.values()), None)
        dtype = any_param.dtype if any_param is not None else torch.float32
        flat_index = (
            (row_base[src_of] + got[:, 0]) * max(F_me, 1) + slot_of[got[:, 1]] if got.numel() else got.new_empty(0)
        )
        partial = torch.zeros(total_rows * F_me, D, dtype=dtype, device=got.device)
        for f in my_slots:
            table_name = self.features[f][1]
            mask = got[:, 1] == f
            if not bool(mask.any()):
                # Keep the shard in the graph so every worker's backward touches the same params.
                partial = partial + 0.0 * self.shards[table_name].sum()
                continue
            emb = nn.functional.embedding(got[mask, 2], self.shards[table_name])
            partial = partial.index_add(0, flat_index[mask], emb)
        # Send each source worker its rows' partials: (B_src, F_me, D) blocks in rank order.
        out_send = [batch_sizes[s] * F_me * D for s in range(W)]
        out_recv = [n * len(self.slots_on[s]) * D for s in range(W)]
        received = _AllToAll.apply(partial.reshape(-1), out_send, out_recv, 1.0 / W)

        pooled = received.new_zeros(n, len(self.features), D)
        start = 0
        for s in range(W):
            size = out_recv[s]
            if size:
                chunk = received[start : start + size].reshape(n, len(self.slots_on[s]), D)
                idx = torch.tensor(self.slots_on[s], dtype=torch.long, device=chunk.device)
                pooled = pooled.index_add(1, idx, chunk)
            start += size
        if self.mean_pooling:
            pooled = pooled / lengths.clamp(min=1).unsqueeze(-1).to(pooled.dtype)
        return list(pooled.unbind(dim=1))

    def gather_full_tables(self) -> dict[str, torch.Tensor]:
        """Every table's full weight on every worker (a collective; for export and checkpoints)."""
        out: dict[str, torch.Tensor] = {}
        for table, shards in self.plan.shards.items():
            pieces = []
            for shard in shards:
                if shard.rows == 0:
                    continue
                if shard.rank == self.rank:
                    buf = self.shards[table].detach().contiguous()
                else:
                    buf = torch.empty(
                        shard.rows,
                        self.dim,
                        dtype=next(self.parameters()).dtype if len(self.shards) else torch.float32,
                        device=self._device(),
                    )
                dist.broadcast(buf, src=shard.rank)
                pieces.append(buf.cpu())
            out[table] = torch.cat(pieces)
        return out

    def _device(self) -> torch.device:
        for p in self.shards.values():
            return p.device
        return (
            torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        )


class ShardedQuestRanker(nn.Module):
    """A :class:`~discord_ml_platform.ads.model.QuestRanker` with sharded tables and DDP dense layers.

    Args:
        config: Model config.
        mode: ``table`` or ``row`` sharding.
        rank: This worker's rank.
        world_size: Workers.
        device: This worker's device.
        full_state: Optional state dict of an unsharded ``QuestRanker`` to start from (same init
            on every worker, or a checkpoint to resume); otherwise fresh random weights.
        wrap_ddp: Wrap the dense layers in ``DistributedDataParallel`` (off only for tests).
    """

    def __init__(
        self,
        config: RankerConfig,
        mode: Literal["table", "row"],
        rank: int,
        world_size: int,
        device: torch.device | str = "cpu",
        full_state: dict[str, torch.Tensor] | None = None,
        wrap_ddp: bool = True,
    ) -> None:
        super().__init__()
        self.config = config
        self.plan = plan_sharding(config.cardinalities, world_size, mode)
        device = torch.device(device)
        full_tables = None
        dense = QuestRanker(config, with_tables=False)
        if full_state is not None:
            full_tables = {k.split(".")[1]: v for k, v in full_state.items() if k.startswith("tables.")}
            dense.load_state_dict({k: v for k, v in full_state.items() if not k.startswith("tables.")})
        self.embeddings = ShardedEmbeddingCollection(config, self.plan, rank, device, full_tables)
        dense = dense.to(device)
        self.dense: nn.Module = dense
        if wrap_ddp and world_size > 1:
            device_ids = [device] if device.type == "cuda" else None
            self.dense = nn.parallel.DistributedDataParallel(dense, device_ids=device_ids)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits ``(rows,)`` of this worker's local batch (a collective)."""
        return self.dense(batch, self.embeddings(batch))

    def dense_parameters(self) -> list[nn.Parameter]:
        """Replicated (data-parallel) parameters."""
        return list(self.dense.parameters())

    def embedding_parameters(self) -> list[nn.Parameter]:
        """This worker's shard parameters."""
        return list(self.embeddings.parameters())

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict of the equivalent unsharded ``QuestRanker`` (a collective)."""
        inner = getattr(self.dense, "module", self.dense)
        state = {k: v.detach().cpu() for k, v in inner.state_dict().items()}
        for table, weight in self.embeddings.gather_full_tables().items():
            state[f"tables.{table}.weight"] = weight
        return state

    def to_unsharded(self) -> QuestRanker:
        """An unsharded ``QuestRanker`` with these weights (a collective), on the CPU."""
        model = QuestRanker(self.config)
        model.load_state_dict(self.full_state_dict())
        return model


def shard_memory(
    config: RankerConfig, world_size: int, mode: ShardingMode, optimizer_slots: int = 2
) -> list[dict[str, int]]:
    """Parameter and optimizer bytes per worker, without building anything.

    Args:
        config: Model config.
        world_size: Workers.
        mode: ``none`` (every worker holds every table), ``table`` or ``row``.
        optimizer_slots: Optimizer state tensors per parameter (AdamW: 2).

    Returns:
        Per rank: ``embedding_rows``, ``embedding_bytes``, ``dense_bytes``, ``optimizer_bytes``,
        ``total_bytes`` (fp32).
    """
    dense_params = sum(p.numel() for p in QuestRanker(config, with_tables=False).parameters())
    dim = config.embedding_dim
    rows_per_rank: list[int]
    if mode == "none" or world_size == 1:
        rows_per_rank = [sum(config.cardinalities.values())] * world_size
    else:
        plan = plan_sharding(config.cardinalities, world_size, mode)
        rows_per_rank = [plan.rows_on(r) for r in range(world_size)]
    out = []
    for rows in rows_per_rank:
        params = rows * dim + dense_params
        out.append(
            {
                "embedding_rows": rows,
                "embedding_bytes": rows * dim * 4,
                "dense_bytes": dense_params * 4,
                "optimizer_bytes": params * 4 * optimizer_slots,
                "total_bytes": params * 4 * (1 + optimizer_slots),
            }
        )
    return out


__all__ = [
    "ShardedEmbeddingCollection",
    "ShardedQuestRanker",
    "ShardingMode",
    "ShardingPlan",
    "TableShard",
    "plan_sharding",
    "shard_memory",
]
