"""``QuestRanker``: embeddings + bottom MLP + feature interaction + top MLP -> one logit.

The layout is DLRM's: every sparse feature becomes one ``embedding_dim`` vector (an
``EmbeddingBag`` per *table*, mean/sum-pooled for multi-hot features), dense features go through
a bottom MLP to a vector of the same size, and the vectors are crossed, either by pairwise dot
products (``interaction="dot"``, DLRM) or by DCN-v2 cross layers (``interaction="dcn"``), before
a top MLP. Tables are keyed by name in one ``ModuleDict`` so a later version can place them on
different devices (table-wise / row-wise sharding) without changing the rest of the network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from discord_ml_platform.ads.features import DENSE_KEY, OFFSETS_SUFFIX
from discord_ml_platform.ads.schema import FeatureSchema, quest_feature_schema

MODEL_WEIGHTS = "model.pt"
MODEL_CONFIG = "model_config.json"


class RankerConfig(BaseModel):
    """Architecture of a :class:`QuestRanker`; carries the feature schema (and so the table sizes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    embedding_dim: int = Field(
        default=16, ge=2, le=1024, description="Width of every embedding and of the bottom MLP output."
    )
    bottom_mlp: tuple[int, ...] = Field(default=(32,), description="Hidden sizes of the dense-feature MLP.")
    top_mlp: tuple[int, ...] = Field(default=(64, 32), description="Hidden sizes of the MLP after the interaction.")
    interaction: Literal["dot", "dcn"] = Field(
        default="dot", description="Pairwise dot products (DLRM) or DCN-v2 cross layers."
    )
    cross_layers: int = Field(default=2, ge=1, le=8, description="DCN-v2 cross layers (interaction='dcn').")
    cross_rank: int | None = Field(
        default=None, ge=1, description="Low-rank DCN-v2 cross weights; full rank when unset."
    )
    bag_mode: Literal["mean", "sum"] = Field(default="mean", description="Pooling of multi-hot features.")
    init_std: float = Field(default=0.05, gt=0, description="Std of the normal init of embedding rows.")
    feature_schema: FeatureSchema = Field(
        default_factory=quest_feature_schema, description="Columns and embedding tables (sizes) of the input."
    )

    @property
    def cardinalities(self) -> dict[str, int]:
        """Rows per embedding table."""
        return self.feature_schema.cardinalities

    @classmethod
    def from_schema(cls, schema: FeatureSchema, **overrides: object) -> RankerConfig:
        """A config for ``schema`` with the given field overrides."""
        return cls.model_validate({**overrides, "feature_schema": schema})

    def to_json(self) -> str:
        """JSON that :meth:`model_validate_json` reads back."""
        return self.model_dump_json(indent=2)


def _mlp(sizes: list[int], final_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class CrossNetwork(nn.Module):
    """DCN-v2 cross layers: ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` (optionally low rank)."""

    def __init__(self, width: int, num_layers: int, rank: int | None) -> None:
        super().__init__()
        if rank is None:
            self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(num_layers))
        else:
            self.layers = nn.ModuleList(
                nn.Sequential(nn.Linear(width, rank, bias=False), nn.Linear(rank, width)) for _ in range(num_layers)
            )

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class QuestRanker(nn.Module):
    """Predicts the logit of "user participates in the quest shown".

    Args:
        config: Architecture and feature schema.
        with_tables: Build the embedding tables (False: dense layers only, for sharding).
    """

    def __init__(self, config: RankerConfig, with_tables: bool = True) -> None:
        super().__init__()
        self.config = config
        schema = config.feature_schema
        dim = config.embedding_dim
        # Without tables: the dense part only, for the sharded model (tables live in shards).
        self.tables = nn.ModuleDict(
            {t.name: nn.EmbeddingBag(t.num_embeddings, dim, mode=config.bag_mode) for t in schema.tables}
            if with_tables
            else {}
        )
        for table in self.tables.values():
            nn.init.normal_(table.weight, std=config.init_std)  # type: ignore[arg-type]  # ModuleDict erases EmbeddingBag
        self._features = [(f.name, f.table, f.kind == "multi_hot") for f in schema.sparse]
        self._table_sizes = schema.cardinalities
        self.bottom = _mlp([schema.num_dense_inputs, *config.bottom_mlp, dim], final_activation=True)
        num_vectors = len(self._features) + 1
        self.cross: CrossNetwork | None = None
        if config.interaction == "dot":
            top_in = dim + num_vectors * (num_vectors - 1) // 2
        else:
            self.cross = CrossNetwork(num_vectors * dim, config.cross_layers, config.cross_rank)
            top_in = num_vectors * dim
        self.top = _mlp([top_in, *config.top_mlp, 1], final_activation=False)

    def embed(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """One ``(rows, embedding_dim)`` vector per sparse feature, in schema order."""
        vectors = []
        for name, table, multi_hot in self._features:
            # Modulo keeps any raw id inside the table: new quest ids reuse rows of long-gone ones.
            ids = batch[name].remainder(self._table_sizes[table])
            if multi_hot:
                vectors.append(self.tables[table](ids, batch[name + OFFSETS_SUFFIX]))
            else:
                vectors.append(self.tables[table](ids.view(-1, 1)))
        return vectors

    def forward(self, batch: dict[str, torch.Tensor], embedded: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits of shape ``(rows,)`` for a batch built by :func:`batch_from_frame`.

        Args:
            batch: Model input (only ``dense`` is read when ``embedded`` is given).
            embedded: Pooled sparse-feature vectors computed elsewhere (the sharded model's
                all-to-all); by default looked up in this module's own tables.
        """
        dense = self.bottom(batch[DENSE_KEY])
        vectors = [dense, *(self.embed(batch) if embedded is None else embedded)]
        if self.cross is None:
            stacked = torch.stack(vectors, dim=1)  # (rows, vectors, dim)
            dots = torch.bmm(stacked, stacked.transpose(1, 2))
            # Index pairs are rebuilt per call rather than kept as a buffer: DDP broadcasts
            # buffers on every forward, a collective this constant does not need.
            n = stacked.shape[1]
            upper = torch.triu_indices(n, n, offset=1, device=stacked.device)
            pairs = dots[:, upper[0], upper[1]]
            top_in = torch.cat([dense, pairs], dim=1)
        else:
            top_in = self.cross(torch.cat(vectors, dim=1))
        return self.top(top_in).squeeze(-1)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` (or similar) wrapper."""
    return getattr(model, "module", model)


def save_model(model: nn.Module, path: str | Path) -> Path:
    """Write ``model.pt`` (state dict) and ``model_config.json`` into directory ``path``.

    Args:
        model: A :class:`QuestRanker`, possibly DDP-wrapped.
        path: Output directory (created).

    Returns:
        The directory.
    """
    inner = unwrap(model)
    if not isinstance(inner, QuestRanker):
        raise TypeError(f"expected a QuestRanker, got {type(inner).__name__}")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in inner.state_dict().items()}
    torch.save(state, out / MODEL_WEIGHTS)
    (out / MODEL_CONFIG).write_text(inner.config.to_json())
    return out


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> QuestRanker:
    """Load a model written by :func:`save_model`, in eval mode."""
    p = Path(path)
    config = RankerConfig.model_validate(json.loads((p / MODEL_CONFIG).read_text()))
    model = QuestRanker(config)
    model.load_state_dict(torch.load(p / MODEL_WEIGHTS, map_location=map_location, weights_only=True))
    return model.to(map_location).eval()


def parameter_bytes(model: nn.Module) -> int:
    """Bytes held by the model's parameters (embedding tables dominate)."""
    return sum(p.numel() * p.element_size() for p in unwrap(model).parameters())
