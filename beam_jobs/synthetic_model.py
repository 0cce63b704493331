"""The hidden generative model behind the synthetic stream: popularity and labels.

Everything an id "is" (its base popularity, its drift, its label weight, its latent
vector, its item price) comes from a counter-based hash of ``(seed, purpose, id)``
(splitmix64 on NumPy ``uint64``), so any id, including one born in hour 10,000, gets
its properties without tables and without replaying earlier hours.

Popularity: each categorical feature has ``vocab_size`` slots. Slot ``s`` holds value
id ``s + g * vocab_size`` in its generation ``g``; with churn, ``new_per_hour`` slots
are reborn every hour, so ids beyond the initial vocabulary keep appearing. An id's
score is ``base + drift(h) + lifecycle(age)``: a hashed normal, a slow sine with a
hashed frequency and phase (some ids rise while others fall), and a rise-then-fade
curve over its lifetime. Sorting slots by score gives the hour's rank -> id map;
event ranks come from a Zipf inverse CDF. All of it is closed-form in the hour index.

Labels: a logistic model with per-value weights, a user-item latent dot product, a
device x category cross weight, a position effect and a price effect; see
:func:`logit`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Mapping

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TWO_PI = 2.0 * np.pi
_INDEX_BITS = 22  # vocabularies up to 4M slots sort on packed int64 keys

DRIFT_AMPLITUDE = 1.0  # score units; drift_per_hour sets how fast ids move within it
_RISE_HOURS = 12.0  # a newborn id peaks this many hours after birth
_BOOST_SCALE = 0.8  # peak lifecycle boost is uniform in [0, _BOOST_SCALE)
_FADE_SCALE = 4.0  # score lost by the end of an id's life

WEIGHT_SCALES = {
    "user_id": 0.5,
    "item_id": 0.6,
    "publisher": 0.3,
    "category": 0.3,
    "device": 0.2,
    "country": 0.2,
}
LATENT_DIM = 8
_LATENT_SCALE = 0.5  # per component, so the dot product has std ~0.7
_CROSS_SCALE = 0.5
_POSITION_SLOPE = -0.4  # per log(position)
_PRICE_SLOPE = -0.2  # per standardized log price
PRICE_LOG_MEAN = 3.0
PRICE_LOG_STD = 0.8


# ---------------------------------------------------------------------------- hashing


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer, element-wise on ``uint64`` (wraps on overflow)."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def salt(seed: int, *names: str) -> np.uint64:
    """A stable 64-bit salt for ``(seed, *names)`` (not Python's salted ``hash``)."""
    key = "\x1f".join([str(seed), *names]).encode()
    return np.uint64(
        int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")
    )


def _hash(salt_: np.uint64, ids: np.ndarray) -> np.ndarray:
    return splitmix64(splitmix64(np.asarray(ids).astype(np.uint64) ^ salt_))


def hash_uniform(salt_: np.uint64, ids: np.ndarray) -> np.ndarray:
    """Pseudo-random uniforms in [0, 1), one per id, a pure function of (salt, id)."""
    return (_hash(salt_, ids) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def hash_normal(salt_: np.uint64, ids: np.ndarray) -> np.ndarray:
    """Pseudo-random standard normals, one per id (Box-Muller on two 32-bit halves)."""
    h = _hash(salt_, ids)
    u1 = ((h >> np.uint64(32)).astype(np.float64) + 1.0) * 2.0**-32  # (0, 1]
    u2 = (h & np.uint64(0xFFFFFFFF)).astype(np.float64) * 2.0**-32
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(_TWO_PI * u2)


# ------------------------------------------------------------------------- popularity


@dataclasses.dataclass(frozen=True)
class Popularity:
    """The popularity process of one categorical feature.

    Attributes:
        name: Feature name (part of every hash salt).
        vocab_size: Number of slots, i.e. live ids at any hour.
        exponent: Zipf exponent of the rank-frequency curve.
        new_per_hour: Slots reborn with a never-seen id each hour (0 = no churn).
        drift_per_hour: Largest typical change of an id's score per hour.
        seed: Stream seed.
    """

    name: str
    vocab_size: int
    exponent: float
    new_per_hour: int
    drift_per_hour: float
    seed: int

    @property
    def lifetime_hours(self) -> int:
        """Hours between two rebirths of a slot (0 when there is no churn)."""
        if self.new_per_hour == 0:
            return 0
        return -(-self.vocab_size // self.new_per_hour)


def slot_ids(pop: Popularity, hour: int) -> tuple[np.ndarray, np.ndarray]:
    """Value id and age (hours since birth) of every slot at ``hour``.

    Slot ``s`` is first reborn at hour ``k_s = s // new_per_hour + 1`` and then every
    ``lifetime_hours``; at hour 0 every slot holds its initial id ``s``.
    """
    slots = np.arange(pop.vocab_size, dtype=np.int64)
    lifetime = pop.lifetime_hours
    if lifetime == 0:
        return slots, np.full(pop.vocab_size, np.inf)
    birth = slots // pop.new_per_hour + 1
    generation = (hour - birth + lifetime) // lifetime
    age = (hour - birth) % lifetime
    return slots + generation * pop.vocab_size, age.astype(np.float64)


def scores(pop: Popularity, ids: np.ndarray, age: np.ndarray, hour: int) -> np.ndarray:
    """Popularity score of each id at ``hour`` (higher = more popular)."""
    base = hash_normal(salt(pop.seed, "base", pop.name), ids)
    rate = pop.drift_per_hour / DRIFT_AMPLITUDE
    omega = rate * (0.5 + hash_uniform(salt(pop.seed, "omega", pop.name), ids))
    phase = _TWO_PI * hash_uniform(salt(pop.seed, "phase", pop.name), ids)
    score = base + DRIFT_AMPLITUDE * np.sin(omega * hour + phase)
    if pop.lifetime_hours:
        boost = _BOOST_SCALE * hash_uniform(salt(pop.seed, "boost", pop.name), ids)
        rise = age / _RISE_HOURS
        score += boost * rise * np.exp(1.0 - rise)
        score -= _FADE_SCALE * (age / pop.lifetime_hours) ** 4
    return score


@functools.lru_cache(maxsize=16)
def ranked_ids(pop: Popularity, hour: int) -> np.ndarray:
    """Value ids ordered by popularity at ``hour`` (index = Zipf rank); read-only."""
    ids, age = slot_ids(pop, hour)
    out = ids[_descending_order(scores(pop, ids, age, hour))]
    out.setflags(write=False)
    return out


def _descending_order(score: np.ndarray) -> np.ndarray:
    """Indices by descending score, ties by index, whatever sort NumPy picks.

    Scores are quantized to 2^-30 and packed with the index into unique int64 keys,
    which sort faster than a stable float argsort and have no ties to break.
    """
    n = len(score)
    if n >= 2**_INDEX_BITS or np.abs(score).max(initial=0.0) >= 2**10:
        return np.argsort(-score, kind="stable")
    quantized = np.round(-score * 2.0**30).astype(np.int64)
    keys = (quantized << np.int64(_INDEX_BITS)) | np.arange(n, dtype=np.int64)
    return np.sort(keys) & np.int64(2**_INDEX_BITS - 1)


@functools.lru_cache(maxsize=8)
def rank_cdf(vocab_size: int, exponent: float) -> np.ndarray:
    """Unnormalized cumulative Zipf weights ``sum_{i<=r} i^-exponent``; read-only."""
    cdf = np.cumsum(np.arange(1, vocab_size + 1, dtype=np.float64) ** -exponent)
    cdf.setflags(write=False)
    return cdf


def sample_ids(
    pop: Popularity, hour: int, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Draws ``n`` value ids: Zipf ranks by inverse CDF, mapped to the hour's ids."""
    cdf = rank_cdf(pop.vocab_size, pop.exponent)
    ranks = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    return ranked_ids(pop, hour)[np.minimum(ranks, pop.vocab_size - 1)]


# ----------------------------------------------------------------------------- labels


def item_log_price(seed: int, item_ids: np.ndarray) -> np.ndarray:
    """The item's list log-price (lognormal prices, a pure function of the item)."""
    z = hash_normal(salt(seed, "price"), item_ids)
    return PRICE_LOG_MEAN + PRICE_LOG_STD * z


def _value_weight(seed: int, name: str, ids: np.ndarray) -> np.ndarray:
    w = WEIGHT_SCALES[name] * hash_normal(salt(seed, "weight", name), ids)
    return np.where(ids < 0, 0.0, w)  # missing value: no contribution


def _latent_dot(seed: int, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    # hashing every event is cheaper than np.unique (a sort) to hash distinct ids only
    dot = np.zeros(len(users))
    for j in range(LATENT_DIM):
        u = hash_normal(salt(seed, "latent", "user_id", str(j)), users)
        v = hash_normal(salt(seed, "latent", "item_id", str(j)), items)
        dot += u * v
    dot *= _LATENT_SCALE**2
    return np.where((users < 0) | (items < 0), 0.0, dot)


def _cross_weight(seed: int, devices: np.ndarray, categories: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        keys = splitmix64(devices.astype(np.uint64) ^ salt(seed, "cross"))
        keys = keys + categories.astype(np.uint64)
    w = _CROSS_SCALE * hash_normal(salt(seed, "cross2"), keys)
    return np.where((devices < 0) | (categories < 0), 0.0, w)


def logit(
    seed: int,
    signal: float,
    ids: Mapping[str, np.ndarray],
    position: np.ndarray,
    price: np.ndarray,
) -> np.ndarray:
    """The hidden label logit of each event, without the calibrated bias.

    Args:
        seed: Stream seed.
        signal: Multiplier on every effect (0 = labels are pure noise).
        ids: Integer value id per event for each feature in ``WEIGHT_SCALES``; -1 =
            missing.
        position: Slot position of each event (1 = top).
        price: Price of each event (missing = NaN, no effect).

    Returns:
        Float64 logits, one per event.
    """
    z = sum(_value_weight(seed, name, ids[name]) for name in WEIGHT_SCALES)
    z = z + _latent_dot(seed, ids["user_id"], ids["item_id"])
    z = z + _cross_weight(seed, ids["device"], ids["category"])
    z = z + _POSITION_SLOPE * np.log(
        np.clip(np.nan_to_num(position, nan=1.0), 1.0, None)
    )
    std_price = (np.log(np.clip(price, 1e-6, None)) - PRICE_LOG_MEAN) / PRICE_LOG_STD
    z = z + _PRICE_SLOPE * np.nan_to_num(std_price, nan=0.0)
    return signal * np.asarray(z, dtype=np.float64)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def calibrate_bias(z: np.ndarray, base_rate: float, iterations: int = 60) -> float:
    """The bias ``b`` with ``mean(sigmoid(b + z)) == base_rate``, by bisection."""
    lo, hi = -30.0, 30.0
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if float(np.mean(sigmoid(mid + z))) < base_rate:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
