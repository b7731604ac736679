"""``QuestWorld``: the fixed synthetic universe (users, games, guilds, quests) behind every window.

Everything here is derived from the seed alone, so all daily windows generated with one seed
share users, games, guilds and quests. Users, games and guilds are finite pools drawn with a
numpy ``Generator``. Quests are an unbounded stream (a few launch every day), so their attributes
come from a counter-based hash of ``(seed, quest_id)`` instead: any window can compute any
quest's attributes without generating the quests before it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from discord_ml_platform.ads.schema import PLATFORMS, FeatureSchema, quest_feature_schema

EPOCH = dt.date(2020, 1, 1)
"""Day 0 of the quest id stream; quest ids are ``day_index * quests_per_day + k``."""

PLATFORM_SHARE = np.array([0.45, 0.2, 0.25, 0.1])  # desktop, ios, android, web
# How much each quest kind (all / mobile-focused / desktop-focused) appeals on each platform:
# a hidden quest x platform interaction a model can only learn through the quest id.
PLATFORM_EFFECT = np.array(
    [
        [0.0, 0.0, 0.0, -0.1],
        [-0.6, 0.5, 0.5, -0.6],
        [0.5, -0.7, -0.7, 0.2],
    ]
)


@dataclass(frozen=True)
class WorldConfig:
    """Sizes and shapes of the synthetic world.

    Attributes:
        num_users: Users in the pool.
        num_games: Games in the pool.
        num_guilds: Guilds in the pool.
        latent_dim: Dimension of the hidden taste vectors.
        quests_per_day: Quests launched every day.
        min_quest_days: Shortest quest lifetime in days.
        max_quest_days: Longest quest lifetime in days.
        user_zipf: Zipf exponent of user activity (how often a user appears).
        item_zipf: Zipf exponent of game and guild popularity.
        personal_taste: Weight of the part of a user's taste that only their own history reveals
            (learnable only through the user id); the rest comes from their games and guilds.
        guild_taste: Weight of the guilds' share of a user's taste (games weigh 1).
    """

    num_users: int = 50_000
    num_games: int = 2_000
    num_guilds: int = 10_000
    latent_dim: int = 8
    quests_per_day: int = 12
    min_quest_days: int = 10
    max_quest_days: int = 40
    user_zipf: float = 0.8
    item_zipf: float = 1.05
    personal_taste: float = 0.1
    guild_taste: float = 0.5

    def schema(self) -> FeatureSchema:
        """The feature schema matching this world's cardinalities."""
        return quest_feature_schema(num_users=self.num_users, num_games=self.num_games, num_guilds=self.num_guilds)


# ---------------------------------------------------------------------------------------------
# Counter-based hashing: deterministic per-id randomness without a sequential generator.


def _splitmix64(x: np.ndarray) -> np.ndarray:
    # SplitMix64 finaliser; uint64 arithmetic wraps silently on arrays, which is what we want.
    x = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hash_uniform(seed: int, ids: np.ndarray, salt: int) -> np.ndarray:
    """Uniform floats in (0, 1), one per id, a pure function of ``(seed, id, salt)``."""
    key = _splitmix64(np.array([seed * 1_000_003 + salt * 7_919], dtype=np.uint64))
    h = _splitmix64(np.asarray(ids).astype(np.uint64) ^ key)
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def hash_normal(seed: int, ids: np.ndarray, salt: int, dim: int = 1) -> np.ndarray:
    """Standard normal draws of shape ``(len(ids), dim)`` via Box-Muller on hashed uniforms."""
    cols = []
    for d in range(dim):
        u1 = hash_uniform(seed, ids, salt * 131 + 2 * d)
        u2 = hash_uniform(seed, ids, salt * 131 + 2 * d + 1)
        cols.append(np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2))
    return np.stack(cols, axis=1)


def zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Normalised Zipf weights over ``n`` ids, with popularity ranks shuffled across ids."""
    ranks = rng.permutation(n) + 1
    w = ranks.astype(np.float64) ** -exponent
    return w / w.sum()


def segment_mean(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Mean of ``values`` rows over CSR segments ``offsets``; empty segments give zeros."""
    csum = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])
    sums = csum[offsets[1:]] - csum[offsets[:-1]]
    counts = np.diff(offsets)[:, None]
    return sums / np.maximum(counts, 1)


def gather_lists(offsets: np.ndarray, values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR gather: the lists of ``rows`` as new ``(offsets, values)``, without a Python loop.

    Args:
        offsets: CSR offsets, ``len(lists) + 1`` entries.
        values: Concatenated list values.
        rows: Which lists to take, in output order (repeats allowed).

    Returns:
        Offsets (``len(rows) + 1``, int64) and values of the gathered lists.
    """
    rows = np.asarray(rows, dtype=np.int64)
    starts = offsets[rows]
    lengths = offsets[rows + 1] - starts
    out_offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out_offsets[1:])
    # Position j of output list r reads values[starts[r] + j].
    idx = np.repeat(starts - out_offsets[:-1], lengths) + np.arange(out_offsets[-1], dtype=np.int64)
    return out_offsets, values[idx]


def _draw_lists(rng: np.random.Generator, counts: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    values = rng.choice(len(weights), size=int(offsets[-1]), p=weights).astype(np.int64)
    return offsets, values


@dataclass(frozen=True)
class QuestBatch:
    """Attributes of a set of quests (one entry per quest id)."""

    quest_id: np.ndarray
    launch_day: np.ndarray
    lifetime: np.ndarray
    game_id: np.ndarray
    reward: np.ndarray
    kind: np.ndarray
    bias: np.ndarray
    exposure: np.ndarray
    latent: np.ndarray


@dataclass(frozen=True)
class QuestWorld:
    """Users, games, guilds and the quest stream of one seed.

    Build with :meth:`QuestWorld.from_seed`. User lists (guilds, recently played games) are CSR
    arrays: ``user_game_values[user_game_offsets[u]:user_game_offsets[u + 1]]``.
    """

    seed: int
    config: WorldConfig
    user_weights: np.ndarray
    user_latent: np.ndarray
    user_platform: np.ndarray
    user_peak_hour: np.ndarray
    user_account_age: np.ndarray
    user_session_rate: np.ndarray
    user_game_offsets: np.ndarray
    user_game_values: np.ndarray
    user_guild_offsets: np.ndarray
    user_guild_values: np.ndarray
    game_weights: np.ndarray
    game_cdf: np.ndarray
    game_latent: np.ndarray
    schema: FeatureSchema = field(repr=False)

    @classmethod
    def from_seed(cls, seed: int = 0, config: WorldConfig | None = None) -> QuestWorld:
        """Derive the world deterministically from ``seed``.

        Args:
            seed: Any non-negative integer.
            config: Sizes of the world; defaults to :class:`WorldConfig`.

        Returns:
            The world shared by every window generated with this seed.
        """
        cfg = config or WorldConfig()
        rng = np.random.default_rng([seed, 0x5EED])
        k = cfg.latent_dim
        n_u = cfg.num_users

        game_weights = zipf_weights(cfg.num_games, cfg.item_zipf, rng)
        guild_weights = zipf_weights(cfg.num_guilds, cfg.item_zipf, rng)
        game_latent = rng.standard_normal((cfg.num_games, k))
        guild_latent = rng.standard_normal((cfg.num_guilds, k))

        game_off, game_val = _draw_lists(rng, np.minimum(1 + rng.poisson(3.0, n_u), 12), game_weights)
        guild_off, guild_val = _draw_lists(rng, np.minimum(rng.poisson(2.5, n_u), 10), guild_weights)

        # A user's taste is part personal, part what they play, part the guilds they are in:
        # that is what makes the bags of game and guild ids predictive for users never seen.
        latent = (
            cfg.personal_taste * rng.standard_normal((n_u, k))
            + 1.0 * segment_mean(game_latent[game_val], game_off)
            + cfg.guild_taste * segment_mean(guild_latent[guild_val], guild_off)
        )
        latent /= latent.std(axis=0, keepdims=True)

        return cls(
            seed=seed,
            config=cfg,
            user_weights=zipf_weights(n_u, cfg.user_zipf, rng),
            user_latent=latent,
            user_platform=rng.choice(len(PLATFORMS), size=n_u, p=PLATFORM_SHARE),
            user_peak_hour=rng.normal(20.0, 3.0, n_u),
            user_account_age=rng.exponential(500.0, n_u) + 1.0,
            user_session_rate=rng.lognormal(1.5, 0.8, n_u),
            user_game_offsets=game_off,
            user_game_values=game_val,
            user_guild_offsets=guild_off,
            user_guild_values=guild_val,
            game_weights=game_weights,
            game_cdf=np.cumsum(game_weights),
            game_latent=game_latent,
            schema=cfg.schema(),
        )

    def quests(self, quest_ids: np.ndarray) -> QuestBatch:
        """Attributes of the given quest ids, computed by hashing (no state)."""
        cfg = self.config
        q = np.asarray(quest_ids, dtype=np.int64)
        s = self.seed
        game = np.minimum(np.searchsorted(self.game_cdf, hash_uniform(s, q, 1)), cfg.num_games - 1)
        kind_u = hash_uniform(s, q, 4)
        latent = 0.8 * self.game_latent[game] + 0.6 * hash_normal(s, q, 5, cfg.latent_dim)
        return QuestBatch(
            quest_id=q,
            launch_day=q // cfg.quests_per_day,
            lifetime=cfg.min_quest_days
            + np.floor(hash_uniform(s, q, 2) * (cfg.max_quest_days - cfg.min_quest_days + 1)).astype(np.int64),
            game_id=game.astype(np.int64),
            reward=np.exp(4.0 + 0.7 * hash_normal(s, q, 3)[:, 0]),
            kind=np.where(kind_u < 0.5, 0, np.where(kind_u < 0.75, 1, 2)),
            bias=0.5 * hash_normal(s, q, 6)[:, 0],
            # Heavy-tailed (Pareto) exposure: a few quests get most impressions.
            exposure=hash_uniform(s, q, 7) ** -0.8,
            latent=latent / np.sqrt(0.64 + 0.36),
        )

    def live_quests(self, day_index: int) -> QuestBatch:
        """Quests running on ``day_index`` (days since :data:`EPOCH`)."""
        cfg = self.config
        first = max(0, day_index - cfg.max_quest_days) * cfg.quests_per_day
        ids = np.arange(first, (day_index + 1) * cfg.quests_per_day, dtype=np.int64)
        batch = self.quests(ids)
        live = (batch.launch_day <= day_index) & (day_index < batch.launch_day + batch.lifetime)
        return self.quests(ids[live])


def day_index(window_date: dt.date) -> int:
    """Days from :data:`EPOCH` to ``window_date``.

    Raises:
        ValueError: the date is before the epoch.
    """
    days = (window_date - EPOCH).days
    if days < 0:
        raise ValueError(f"window dates start at {EPOCH.isoformat()}, got {window_date.isoformat()}")
    return days
