"""``generate_window``: one day of quest impressions with labels from a known probability.

The ground truth (``true_prob``) is a logistic function of feature *interactions*: user x quest
affinity through hidden taste vectors (carried by the games and guilds a user belongs to), "the
quest promotes a game the user plays", a quest-kind x platform effect, reward x engagement, hour
of day and quest novelty. Labels are Bernoulli draws from it, so the AUC of ``true_prob`` is the
best any model can reach (the ceiling). Raw ids carry little of this signal for a tree model; a
model that embeds ids and crosses them can approach the ceiling.

Generative model (what a model can and cannot learn):

* a user's hidden taste is ``mean(latent of games played) + 0.5 * mean(latent of guilds) +
  personal_taste * noise`` (``WorldConfig.personal_taste``, 0.1 by default): mostly revealed by
  the multi-hot lists, a little only by the user's own history (the user id);
* a quest's taste vector is ``0.8 * latent of its game + 0.6 * its own noise`` (learnable
  through the quest id and the game it promotes);
* ``logit = w(day) * <user, quest> / sqrt(k) + 0.25 * clip(<.,.>, 0, 2.5)^2 + 1.1 * plays +
  kind x platform + reward x engagement + hour + novelty + account age + quest bias``, then an
  intercept that sets the day's base rate.

The ceiling (AUC of ``true_prob``) is what a model with infinite data and the world's hidden
vectors would reach; an embedding model with enough rows gets within about 0.01 of it, a tree
model on target-encoded ids cannot form the ``<user, quest>`` dot product and stays 0.02 or
more below.

Everything is vectorised; 1M rows take a few seconds.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa

from discord_ml_platform.ads.data.world import PLATFORM_EFFECT, QuestWorld, day_index, gather_lists
from discord_ml_platform.ads.schema import PLATFORMS

TARGET_POSITIVE_RATE = 0.10
"""Mean participation probability of a window, before the day's drift."""

_world_cache: dict[int, QuestWorld] = {}


def default_world(seed: int) -> QuestWorld:
    """The default-sized world of ``seed``, built once per process."""
    if seed not in _world_cache:
        _world_cache[seed] = QuestWorld.from_seed(seed)
    return _world_cache[seed]


def _intercept_for_rate(logit: np.ndarray, rate: float, iterations: int = 8) -> float:
    """The shift ``c`` with ``mean(sigmoid(logit + c)) == rate`` (Newton's method)."""
    c = float(np.log(rate / (1.0 - rate)) - np.median(logit))
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(logit + c)))
        slope = float(np.mean(p * (1.0 - p)))
        c -= (float(p.mean()) - rate) / max(slope, 1e-9)
    return c


def _list_array(offsets: np.ndarray, values: np.ndarray) -> pd.Series:
    arr = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values, type=pa.int64()))
    return pd.Series(pd.arrays.ArrowExtensionArray(arr))


def generate_window(
    window_date: dt.date,
    num_rows: int,
    seed: int = 0,
    world: QuestWorld | None = None,
) -> pd.DataFrame:
    """Generate one day of quest impressions.

    Args:
        window_date: The day; drives drift, which quests are live and which are new.
        num_rows: Impressions to generate.
        seed: Seed of the world and of the day's draws; same seed and date give the same frame.
        world: A prebuilt world (e.g. a small one for tests); defaults to the default-sized world
            of ``seed``. Pass the same world for every window of one dataset.

    Returns:
        One row per impression: ``event_id``, ``user_id``, ``quest_id``, ``quest_game_id``,
        ``platform``, ``hour``, ``guild_ids`` and ``game_ids`` (Arrow list<int64>),
        ``account_age_days``, ``sessions_last_week``, ``quest_reward``, ``quest_age_days``,
        ``quest_is_new``, ``label`` and ``true_prob``.
    """
    world = world or default_world(seed)
    day = day_index(window_date)
    rng = np.random.default_rng([world.seed, day, 0xDA7A])
    n = int(num_rows)

    # Who sees what: users by Zipf activity; live quests by heavy-tailed exposure, with a
    # launch boost so new quests get traffic on their first days.
    users = rng.choice(len(world.user_weights), size=n, p=world.user_weights)
    live = world.live_quests(day)
    age = day - live.launch_day
    exposure = live.exposure * (1.0 + 2.0 * np.exp(-age / 2.0))
    qi = rng.choice(len(live.quest_id), size=n, p=exposure / exposure.sum())

    platform = np.where(rng.random(n) < 0.8, world.user_platform[users], rng.integers(0, len(PLATFORMS), size=n))
    hour = np.floor(world.user_peak_hour[users] + rng.normal(0.0, 3.0, n)).astype(np.int64) % 24
    sessions = rng.poisson(world.user_session_rate[users] * (1.0 + 0.1 * np.sin(2 * np.pi * day / 7)))
    account_age = world.user_account_age[users] + day
    game_off, game_val = gather_lists(world.user_game_offsets, world.user_game_values, users)
    guild_off, guild_val = gather_lists(world.user_guild_offsets, world.user_guild_values, users)

    quest_game = live.game_id[qi]
    quest_age = age[qi]
    reward = live.reward[qi]
    # Does the user play the game this quest promotes?
    row_of_value = np.repeat(np.arange(n), np.diff(game_off))
    plays = np.bincount(row_of_value, weights=game_val == quest_game[row_of_value], minlength=n) > 0

    k = world.config.latent_dim
    affinity = np.einsum("ij,ij->i", world.user_latent[users], live.latent[qi]) / np.sqrt(k)
    engagement = 1.0 / (1.0 + np.exp(-(np.log1p(sessions) - 1.8) * 2.0))
    # Mild day-to-day drift: the base rate and the weight of taste move slowly with the date.
    drift = 0.15 * np.sin(2 * np.pi * day / 17.0)  # relative change of the base rate
    taste_weight = 1.4 * (1.0 + 0.1 * np.sin(2 * np.pi * day / 29.0))
    logit = (
        taste_weight * affinity
        + 0.25 * np.minimum(np.maximum(affinity, 0.0), 2.5) ** 2
        + 1.1 * plays
        + PLATFORM_EFFECT[live.kind[qi], platform]
        + 0.6 * (np.log(reward) - 4.0) * (engagement - 0.3)
        + 0.3 * np.cos(2 * np.pi * (hour - 21) / 24.0)
        + 0.5 * np.exp(-quest_age / 3.0)
        + 0.15 * (np.log1p(account_age) - 7.5)
        + live.bias[qi]
    )
    # The intercept is solved per window so the mean probability hits a drifting target: a
    # world with popular high-bias quests does not end up at a 30% positive rate.
    logit += _intercept_for_rate(logit, TARGET_POSITIVE_RATE * (1.0 + drift))
    true_prob = 1.0 / (1.0 + np.exp(-logit))
    label = (rng.random(n) < true_prob).astype(np.int64)

    frame = pd.DataFrame(
        {
            # Unique across windows: the day in the high bits, the row in the low 32.
            "event_id": (np.int64(day) << np.int64(32)) + np.arange(n, dtype=np.int64),
            "user_id": users.astype(np.int64),
            "quest_id": live.quest_id[qi],
            "quest_game_id": quest_game,
            "platform": pd.Series(np.asarray(PLATFORMS, dtype=object)[platform], dtype="string"),
            "hour": hour,
            "account_age_days": account_age.astype(np.float32),
            "sessions_last_week": sessions.astype(np.float32),
            "quest_reward": reward.astype(np.float32),
            "quest_age_days": quest_age.astype(np.float32),
            "quest_is_new": quest_age == 0,
            "label": label,
            "true_prob": true_prob,
        }
    )
    frame["game_ids"] = _list_array(game_off, game_val)
    frame["guild_ids"] = _list_array(guild_off, guild_val)
    return frame
