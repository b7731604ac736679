"""The XGBoost baseline: gradient-boosted trees on the same window, with honest tabular features.

Trees cannot use raw ids of a 65k-row id space well, so the baseline gets what a careful
tabular model would get (computed on the *training* rows only, then applied to the holdout):

* dense and context columns as they are (account age, sessions, reward, quest age, novelty,
  hour, platform code) plus list lengths of the multi-hot columns;
* "the user plays the promoted game" (the same cross feature the neural model receives);
* smoothed target encodings (out-of-fold on the training rows, so a row never sees its own
  label) and frequencies of ``user_id``, ``quest_id``, ``quest_game_id``, ``quest_id x platform``
  and ``quest_id x hour``;
* mean target encoding over each multi-hot list (games played, guilds).

What it lacks is a way to cross a user's taste with a quest's, which is exactly what the
embedding model learns and what makes it worth its cost. Tuned with early stopping on a slice
of the training rows. ``fit_xgboost_with_ray`` runs the same fit through Ray Train's
``XGBoostTrainer`` on a cluster.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from discord_ml_platform.ads.features import list_column_arrays, match_indicator
from discord_ml_platform.ads.schema import PLATFORMS

BASELINE_MODEL = "xgboost.ubj"
BASELINE_ENCODER = "encoder.json"

_ONE_HOT_KEYS: dict[str, tuple[str, ...]] = {
    "user": ("user_id",),
    "quest": ("quest_id",),
    "quest_game": ("quest_game_id",),
    "quest_platform": ("quest_id", "platform"),
    "quest_hour": ("quest_id", "hour"),
}
_BAG_KEYS = ("game_ids", "guild_ids")
_RAW = ("account_age_days", "sessions_last_week", "quest_reward", "quest_age_days", "hour")


class XGBoostSettings(BaseModel):
    """Hyper-parameters of the baseline (defaults tuned on the reference window)."""

    model_config = ConfigDict(extra="forbid")

    max_depth: int = Field(default=8, ge=1, le=16, description="Tree depth.")
    eta: float = Field(default=0.1, gt=0, le=1, description="Learning rate.")
    num_boost_round: int = Field(default=2000, ge=1, le=10_000, description="Most boosting rounds.")
    early_stopping_rounds: int = Field(default=30, ge=1, description="Stop when the tuning slice stops improving.")
    min_child_weight: float = Field(default=20.0, ge=0, description="Minimum hessian per leaf.")
    subsample: float = Field(default=0.8, gt=0, le=1, description="Row subsample per tree.")
    colsample_bytree: float = Field(default=0.8, gt=0, le=1, description="Column subsample per tree.")
    reg_lambda: float = Field(default=5.0, ge=0, description="L2 on leaf weights.")
    max_bin: int = Field(default=256, ge=16, le=1024, description="Histogram bins.")
    smoothing: float = Field(default=20.0, ge=0, description="Prior weight of the target encodings.")
    folds: int = Field(default=5, ge=2, le=20, description="Folds of the out-of-fold target encoding.")
    tuning_fraction: float = Field(default=0.1, gt=0, lt=0.5, description="Training rows held for early stopping.")
    nthread: int = Field(default=0, ge=0, description="XGBoost threads; 0 = all cores.")
    seed: int = Field(default=0, ge=0, description="Seed of folds, subsampling and the tuning slice.")


def _key(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """One int64 key per row for a tuple of id columns (platform as its vocabulary code)."""
    key = np.zeros(len(frame), dtype=np.int64)
    for column in columns:
        values = frame[column]
        if column == "platform":
            codes = pd.Categorical(values.astype("string"), categories=list(PLATFORMS)).codes.astype(np.int64) + 1
        else:
            codes = values.to_numpy(dtype=np.int64, na_value=0)
        key = key * 1_000_003 + codes
    return key


@dataclass
class TargetEncoder:
    """Smoothed mean label (and count) per key, learned on training rows only.

    Attributes:
        prior: Mean label of the training rows.
        smoothing: Pseudo-count of the prior.
        tables: Per feature: ``(sorted keys, sums, counts)``.
    """

    prior: float
    smoothing: float
    tables: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)

    @staticmethod
    def _stats(keys: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        uniq, inverse = np.unique(keys, return_inverse=True)
        return (
            uniq,
            np.bincount(inverse, weights=labels, minlength=len(uniq)),
            np.bincount(inverse, minlength=len(uniq)).astype(np.float64),
        )

    def fit_key(self, name: str, keys: np.ndarray, labels: np.ndarray) -> None:
        """Learn the statistics of one feature."""
        self.tables[name] = self._stats(keys, labels)

    def lookup(self, name: str, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Smoothed rate and count of each key (prior and 0 for unseen keys)."""
        uniq, sums, counts = self.tables[name]
        pos = np.clip(np.searchsorted(uniq, keys), 0, max(len(uniq) - 1, 0))
        hit = (uniq[pos] == keys) if len(uniq) else np.zeros(len(keys), dtype=bool)
        s = np.where(hit, sums[pos] if len(uniq) else 0.0, 0.0)
        c = np.where(hit, counts[pos] if len(uniq) else 0.0, 0.0)
        return (s + self.smoothing * self.prior) / (c + self.smoothing), c

    def to_json(self) -> str:
        """Serialise (keys, sums, counts as lists)."""
        return json.dumps(
            {
                "prior": self.prior,
                "smoothing": self.smoothing,
                "tables": {k: [u.tolist(), s.tolist(), c.tolist()] for k, (u, s, c) in self.tables.items()},
            }
        )

    @classmethod
    def from_json(cls, text: str) -> TargetEncoder:
        """Read :meth:`to_json` output back."""
        raw = json.loads(text)
        tables = {
            k: (np.asarray(u, dtype=np.int64), np.asarray(s, dtype=np.float64), np.asarray(c, dtype=np.float64))
            for k, (u, s, c) in raw["tables"].items()
        }
        return cls(prior=float(raw["prior"]), smoothing=float(raw["smoothing"]), tables=tables)


def _bag_keys(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    offsets, values = list_column_arrays(frame[column])
    return offsets, values


def _bag_encoding(encoder: TargetEncoder, name: str, offsets: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mean smoothed rate over each row's list (the prior for empty lists)."""
    rates, _ = encoder.lookup(name, values)
    csum = np.concatenate([[0.0], np.cumsum(rates)])
    sums = csum[offsets[1:]] - csum[offsets[:-1]]
    lengths = np.diff(offsets)
    return np.where(lengths > 0, sums / np.maximum(lengths, 1), encoder.prior)


def _base_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {c: frame[c].to_numpy(dtype=np.float64, na_value=0.0) for c in _RAW}
    cols["quest_is_new"] = frame["quest_is_new"].to_numpy(dtype=np.float64, na_value=0.0)
    cols["platform_code"] = _key(frame, ("platform",)).astype(np.float64)
    for column in _BAG_KEYS:
        offsets, _ = list_column_arrays(frame[column])
        cols[f"{column}_len"] = np.diff(offsets).astype(np.float64)
    cols["plays_quest_game"] = match_indicator(frame, "quest_game_id", "game_ids").astype(np.float64)
    return cols


def fit_encoder(frame: pd.DataFrame, settings: XGBoostSettings) -> tuple[TargetEncoder, pd.DataFrame]:
    """Learn the encodings on ``frame`` and return them with ``frame``'s out-of-fold features.

    Out of fold: the rows of fold ``k`` are encoded with statistics of the other folds, so the
    trees never see a row's own label inside its features (which would make them overfit ids).
    """
    labels = frame["label"].to_numpy(dtype=np.float64)
    encoder = TargetEncoder(prior=float(labels.mean()), smoothing=settings.smoothing)
    cols = _base_columns(frame)
    fold = np.random.default_rng([settings.seed, 0xF01D]).integers(0, settings.folds, len(frame))
    for name, key_cols in _ONE_HOT_KEYS.items():
        keys = _key(frame, key_cols)
        encoder.fit_key(name, keys, labels)
        rate = np.empty(len(frame))
        for k in range(settings.folds):
            inside = fold == k
            part = TargetEncoder(encoder.prior, settings.smoothing)
            part.fit_key(name, keys[~inside], labels[~inside])
            rate[inside] = part.lookup(name, keys[inside])[0]
        cols[f"te_{name}"] = rate
        # Frequencies from the full training rows: counts carry no label.
        cols[f"count_{name}"] = encoder.lookup(name, keys)[1]
    for column in _BAG_KEYS:
        offsets, values = _bag_keys(frame, column)
        row_of_value = np.repeat(np.arange(len(frame)), np.diff(offsets))
        encoder.fit_key(column, values, labels[row_of_value])
        rate = np.empty(len(frame))
        for k in range(settings.folds):
            inside = fold == k
            part = TargetEncoder(encoder.prior, settings.smoothing)
            part.fit_key(column, values[~inside[row_of_value]], labels[row_of_value][~inside[row_of_value]])
            rows = np.flatnonzero(inside)
            sub_off = np.concatenate([[0], np.cumsum(np.diff(offsets)[rows])])
            sub_val = values[inside[row_of_value]]
            rate[rows] = _bag_encoding(part, column, sub_off, sub_val)
        cols[f"te_{column}"] = rate
    return encoder, pd.DataFrame(cols)


def transform(frame: pd.DataFrame, encoder: TargetEncoder) -> pd.DataFrame:
    """Features of new rows (holdout, scoring) from an encoder learned on training rows."""
    cols = _base_columns(frame)
    for name, key_cols in _ONE_HOT_KEYS.items():
        rate, count = encoder.lookup(name, _key(frame, key_cols))
        cols[f"te_{name}"] = rate
        cols[f"count_{name}"] = count
    for column in _BAG_KEYS:
        offsets, values = _bag_keys(frame, column)
        cols[f"te_{column}"] = _bag_encoding(encoder, column, offsets, values)
    return pd.DataFrame(cols)


@dataclass
class BaselineModel:
    """A fitted baseline: booster plus encoder."""

    booster: Any
    encoder: TargetEncoder
    settings: XGBoostSettings
    best_iteration: int = 0
    train_seconds: float = 0.0

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Participation probabilities of ``frame``'s rows."""
        import xgboost as xgb

        features = transform(frame, self.encoder)
        return self.booster.predict(xgb.DMatrix(features), iteration_range=(0, self.best_iteration + 1))

    def save(self, path: str | Path) -> Path:
        """Write the booster, the encoder and the settings into directory ``path``."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(out / BASELINE_MODEL))
        (out / BASELINE_ENCODER).write_text(self.encoder.to_json())
        (out / "settings.json").write_text(
            json.dumps({**self.settings.model_dump(), "best_iteration": self.best_iteration})
        )
        return out

    @classmethod
    def load(cls, path: str | Path) -> BaselineModel:
        """Read a directory written by :meth:`save`."""
        import xgboost as xgb

        p = Path(path)
        booster = xgb.Booster()
        booster.load_model(str(p / BASELINE_MODEL))
        raw = json.loads((p / "settings.json").read_text())
        best = int(raw.pop("best_iteration", 0))
        return cls(booster, TargetEncoder.from_json((p / BASELINE_ENCODER).read_text()), XGBoostSettings(**raw), best)


def _params(settings: XGBoostSettings) -> dict[str, Any]:
    return {
        "objective": "binary:logistic",
        "eval_metric": ["logloss", "auc"],
        "tree_method": "hist",
        "max_depth": settings.max_depth,
        "eta": settings.eta,
        "min_child_weight": settings.min_child_weight,
        "subsample": settings.subsample,
        "colsample_bytree": settings.colsample_bytree,
        "lambda": settings.reg_lambda,
        "max_bin": settings.max_bin,
        "nthread": settings.nthread,
        "seed": settings.seed,
    }


def fit_xgboost(train: pd.DataFrame, settings: XGBoostSettings | None = None) -> BaselineModel:
    """Fit the baseline on training rows (in this process).

    Args:
        train: Training rows with features and ``label``.
        settings: Hyper-parameters.

    Returns:
        The fitted model; ``best_iteration`` from early stopping on a slice of ``train``.
    """
    import xgboost as xgb

    settings = settings or XGBoostSettings()
    started = time.perf_counter()
    encoder, features = fit_encoder(train, settings)
    labels = train["label"].to_numpy(dtype=np.float32)
    tune = np.random.default_rng([settings.seed, 0x7E57]).random(len(train)) < settings.tuning_fraction
    dtrain = xgb.QuantileDMatrix(features[~tune], label=labels[~tune], max_bin=settings.max_bin)
    dtune = xgb.QuantileDMatrix(features[tune], label=labels[tune], ref=dtrain)
    booster = xgb.train(
        _params(settings),
        dtrain,
        num_boost_round=settings.num_boost_round,
        evals=[(dtune, "tune")],
        early_stopping_rounds=settings.early_stopping_rounds,
        verbose_eval=False,
    )
    best = int(getattr(booster, "best_iteration", settings.num_boost_round - 1))
    return BaselineModel(booster, encoder, settings, best, time.perf_counter() - started)


def evaluate_baseline(model: BaselineModel, holdout: pd.DataFrame) -> dict[str, float]:
    """Offline metrics (and segments) of the baseline on ``holdout``."""
    from discord_ml_platform.ads.evaluate import evaluate_frame

    return evaluate_frame(holdout, model.predict(holdout))


_TUNE_COLUMN = "_tune"
"""Marks the early-stopping rows in the dataset :func:`fit_xgboost_with_ray` hands its workers."""


def fit_xgboost_with_ray(
    train_path: str,
    settings: XGBoostSettings | None = None,
    *,
    num_workers: int = 1,
    cpus_per_worker: float = 1.0,
    storage_path: str | None = None,
    name: str = "xgboost-baseline",
) -> BaselineModel:
    """Fit the baseline with Ray Train's ``XGBoostTrainer`` (data-parallel boosting over Ray Data).

    The target encodings are fitted on the driver (they are a few group-bys), the feature table
    goes to a Ray Dataset, and the boosting runs on ``num_workers`` Ray Train workers with
    XGBoost's collective (rabit) all-reduce of histograms.

    Args:
        train_path: Training rows (window directory or Parquet file).
        settings: Hyper-parameters.
        num_workers: Boosting workers.
        cpus_per_worker: CPUs per worker.
        storage_path: Ray Train storage for the run (default: Ray's).
        name: Run name.

    Returns:
        The fitted model.
    """
    import ray
    import xgboost as xgb
    from ray.train import RunConfig, ScalingConfig
    from ray.train.xgboost import RayTrainReportCallback, XGBoostTrainer

    from discord_ml_platform.ads.data import read_window

    settings = settings or XGBoostSettings()
    started = time.perf_counter()
    train = read_window(train_path)
    encoder, features = fit_encoder(train, settings)
    features["label"] = train["label"].to_numpy(dtype=np.float32)
    tune = np.random.default_rng([settings.seed, 0x7E57]).random(len(train)) < settings.tuning_fraction
    # One dataset with the tuning flag as a column, split on the workers: each Ray Data dataset
    # a worker reads costs its own streaming split (a coordinator actor and an executor), about
    # as long as the whole boosting of a daily window.
    features[_TUNE_COLUMN] = tune
    datasets: dict[str, Any] = {"train": ray.data.from_pandas(features)}
    params = {**_params(settings), "nthread": max(1, int(cpus_per_worker))}
    rounds = settings.num_boost_round
    stopping = settings.early_stopping_rounds

    def train_fn(config: dict[str, Any]) -> None:
        import ray.train as rt

        def to_dmatrix(frame: pd.DataFrame) -> xgb.DMatrix:
            return xgb.DMatrix(frame.drop(columns=["label", _TUNE_COLUMN]), label=frame["label"])

        shard = rt.get_dataset_shard("train").materialize().to_pandas()
        tuning = shard[_TUNE_COLUMN].to_numpy(dtype=bool)
        dtrain, dtune = to_dmatrix(shard[~tuning]), to_dmatrix(shard[tuning])
        evals_log: dict[str, Any] = {}
        booster = xgb.train(
            config["params"],
            dtrain,
            num_boost_round=config["rounds"],
            evals=[(dtune, "tune")],
            evals_result=evals_log,
            early_stopping_rounds=config["stopping"],
            verbose_eval=False,
        )
        # One report at the end instead of RayTrainReportCallback's report per boosting round:
        # each report is a barrier across the workers and a round trip to the Train controller,
        # seconds per round on a small cluster, far more than the round itself.
        metrics = {f"tune-{name}": float(values[-1]) for name, values in evals_log.get("tune", {}).items()}
        if rt.get_context().get_world_rank() == 0:
            with tempfile.TemporaryDirectory() as checkpoint_dir:
                booster.save_model(str(Path(checkpoint_dir) / RayTrainReportCallback.CHECKPOINT_NAME))
                rt.report(metrics, checkpoint=rt.Checkpoint.from_directory(checkpoint_dir))
        else:
            rt.report(metrics)

    run_config = RunConfig(name=name, storage_path=storage_path) if storage_path else RunConfig(name=name)
    trainer = XGBoostTrainer(
        train_fn,
        train_loop_config={"params": params, "rounds": rounds, "stopping": stopping},
        scaling_config=ScalingConfig(num_workers=num_workers, resources_per_worker={"CPU": cpus_per_worker}),
        datasets=datasets,
        run_config=run_config,
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"XGBoostTrainer {name!r} finished without a checkpoint: {result.error or 'no error'}")
    booster = RayTrainReportCallback.get_model(result.checkpoint)
    best = int(booster.attr("best_iteration") or booster.num_boosted_rounds() - 1)
    return BaselineModel(booster, encoder, settings, best, time.perf_counter() - started)


__all__ = [
    "BaselineModel",
    "TargetEncoder",
    "XGBoostSettings",
    "evaluate_baseline",
    "fit_encoder",
    "fit_xgboost",
    "fit_xgboost_with_ray",
    "transform",
]
