"""Candidate treatments of one categorical feature, their serving bits and costs.

Serving bits are those of the wide-and-deep model the trainer builds from the feature
(:class:`trainer.models.wide_deep.WideAndDeep`): the deep embedding table plus the
1-wide table of the linear part, each with THE size accounting of
:mod:`trainer.serving.sizes` (MGQE paper, Kang et al. 2020, Table 1). Dictionary
treatments have ``V + 1`` rows (``V = min(top_k, distinct ids)`` plus the OOV row), the
way the stats job caps the dictionary at ``top_k`` (``beam_jobs.frequencies``); MGQE
tiers follow the stats job's rule (``tier_boundaries`` over the ``V`` ranked rows, the
OOV row in the last tier).

Example:
    >>> from trainer.contracts.features import FeatureConfig, Treatment
    >>> serving_bits(FeatureConfig("x", treatment=Treatment.FULL, embedding_dim=4,
    ...                            top_k=9), distinct=100)
    1600
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from trainer.contracts.features import FeatureConfig, Treatment, tier_boundaries
from trainer.planning import cost
from trainer.serving import sizes

DICTIONARY_COVERAGE = (0.5, 0.8, 0.9, 0.95, 0.99)
MGQE_HEAD_COVERAGE = (0.5, 0.8)
CENTROIDS = (16, 64, 256)
MGQE_CENTROIDS = ((256, 64), (256, 16), (64, 16), (16, 4))
MIN_BUCKET_LOG2 = 4
MAX_BUCKET_LOG2 = 26


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One way to embed one feature.

    Attributes:
        feature: The feature's spec entry under this treatment.
        bits: Serving bits of its deep and wide tables.
        cost: Predicted collided traffic share (see :mod:`trainer.planning.cost`).
        label: Short human-readable description, e.g. ``hybrid k=500 B=2^10``.
    """

    feature: FeatureConfig
    bits: int
    cost: float
    label: str

    @property
    def treatment(self) -> Treatment:
        return self.feature.treatment


def dictionary_rows(feature: FeatureConfig, distinct: int) -> int:
    """``V``: dictionary rows the stats job keeps, ``min(top_k, distinct)``."""
    return min(feature.top_k, distinct)


def mgqe_tier_sizes(feature: FeatureConfig, distinct: int) -> list[int]:
    """Rows per MGQE tier, OOV row included in the last tier (stats job's rule)."""
    v = dictionary_rows(feature, distinct)
    if feature.tier_min_counts:
        raise ValueError(
            f"{feature.name}: the planner sizes MGQE tiers from tier_shares only"
        )
    edges = [0, *tier_boundaries(v, feature.tier_shares), v]
    tiers = [b - a for a, b in zip(edges, edges[1:], strict=False)]
    tiers[-1] += 1
    return tiers


def serving_bits(feature: FeatureConfig, distinct: int) -> int:
    """Serving bits of one categorical feature's deep + wide tables.

    Args:
        feature: The spec entry (its treatment and sizes).
        distinct: Distinct ids in the count table (caps the dictionary).
    """
    t, d = feature.treatment, feature.embedding_dim
    rows = dictionary_rows(feature, distinct) + 1
    b, comb = feature.hash_buckets, feature.hash_combiner
    if t is Treatment.HASH:
        return sizes.hashing_bits(b, d) + sizes.hashing_bits(b, 1)
    if t is Treatment.DOUBLE_HASH:
        return sizes.double_hashing_bits(b, d, 2, comb) + sizes.double_hashing_bits(
            b, 1, 2, "sum"
        )
    if t is Treatment.HYBRID:
        return sizes.hybrid_bits(rows, b, d, 2, comb) + sizes.hybrid_bits(
            rows, b, 1, 2, "sum"
        )
    wide = sizes.full_bits(rows, 1)
    if t is Treatment.FULL:
        return sizes.full_bits(rows, d) + wide
    if t is Treatment.DPQ:
        k = feature.num_centroids[0]
        return sizes.dpq_bits(rows, d, feature.num_subspaces, k) + wide
    if t is Treatment.MGQE:
        tiers = mgqe_tier_sizes(feature, distinct)
        ks = list(feature.num_centroids)
        if len(ks) == 1:
            ks = ks * len(tiers)
        return sizes.mgqe_shared_bits(tiers, d, feature.num_subspaces, ks) + wide
    raise ValueError(f"{feature.name}: {t.value!r} is not a categorical treatment")


def predicted_cost(
    feature: FeatureConfig,
    profile: cost.CountProfile,
    quant_penalty: float = cost.DEFAULT_QUANT_PENALTY,
) -> float:
    """Predicted collided traffic share of a treatment on a count table."""
    t, b = feature.treatment, float(feature.hash_buckets)
    if t is Treatment.HASH:
        return cost.hashed_cost(profile, 0, b)
    if t is Treatment.DOUBLE_HASH:
        return cost.hashed_cost(profile, 0, b * b)
    v = dictionary_rows(feature, profile.n)
    if t is Treatment.HYBRID:
        return cost.hashed_cost(profile, v, b * b)
    oov = cost.hashed_cost(profile, v, 1)
    if t is Treatment.FULL:
        return oov
    d_sub = feature.num_subspaces
    if t is Treatment.DPQ:
        bits = d_sub * sizes.code_bits(feature.num_centroids[0])
        share = profile.traffic(0, v) / profile.total
        return oov + share * cost.quantization_penalty(bits, quant_penalty)
    if t is Treatment.MGQE:
        edges = [0, *tier_boundaries(v, feature.tier_shares), v]
        ks = list(feature.num_centroids)
        ks = ks * (len(edges) - 1) if len(ks) == 1 else ks
        total = 0.0
        for (lo, hi), k in zip(zip(edges, edges[1:], strict=False), ks, strict=True):
            bits = d_sub * sizes.code_bits(k)
            share = profile.traffic(lo, hi) / profile.total
            total += share * cost.quantization_penalty(bits, quant_penalty)
        return oov + total
    raise ValueError(f"{feature.name}: {t.value!r} is not a categorical treatment")


def _buckets(limit: int) -> list[int]:
    top = max(
        MIN_BUCKET_LOG2, min(MAX_BUCKET_LOG2, math.ceil(math.log2(max(limit, 2))))
    )
    return [2**j for j in range(MIN_BUCKET_LOG2, top + 1)]


def _subspaces(dim: int) -> list[int]:
    return [s for s in (1, 2, 4, 8, 16, 32, 64) if s <= dim and dim % s == 0][-4:]


def _label(f: FeatureConfig, distinct: int) -> str:
    t = f.treatment
    v = dictionary_rows(f, distinct)
    log_b = f"2^{int(math.log2(f.hash_buckets))}"
    if t is Treatment.FULL:
        return f"full V={v:,}"
    if t in (Treatment.HASH, Treatment.DOUBLE_HASH):
        return f"{t.value} B={log_b}"
    if t is Treatment.HYBRID:
        return f"hybrid k={v:,} B={log_b}"
    ks = "/".join(str(k) for k in f.num_centroids)
    if t is Treatment.DPQ:
        return f"dpq V={v:,} D={f.num_subspaces} K={ks}"
    head = tier_boundaries(v, f.tier_shares)[0]
    return f"mgqe V={v:,} D={f.num_subspaces} K={ks} head={head:,}"


def _settings(profile: cost.CountProfile, base: FeatureConfig) -> list[dict[str, Any]]:
    """Spec field overrides of every candidate, in a fixed order."""
    n = profile.n
    dict_sizes = sorted(
        {n, *([profile.heavy] if profile.heavy else [])}
        | {profile.rank_covering(s) for s in DICTIONARY_COVERAGE}
    )
    quant_sizes = sorted({n, *([profile.heavy] if profile.heavy else [])})
    comb = base.hash_combiner
    out: list[dict[str, Any]] = [
        {"treatment": Treatment.FULL, "top_k": v} for v in dict_sizes
    ]
    out += [{"treatment": Treatment.HASH, "hash_buckets": b} for b in _buckets(4 * n)]
    out += [
        {"treatment": Treatment.DOUBLE_HASH, "hash_buckets": b, "hash_combiner": comb}
        for b in _buckets(n)
    ]
    for k in dict_sizes:
        if k < n:
            out += [
                {
                    "treatment": Treatment.HYBRID,
                    "top_k": k,
                    "hash_buckets": b,
                    "hash_combiner": comb,
                }
                for b in _buckets(n - k)
            ]
    for v in quant_sizes:
        for d_sub in _subspaces(base.embedding_dim):
            out += [
                {
                    "treatment": Treatment.DPQ,
                    "top_k": v,
                    "num_subspaces": d_sub,
                    "num_centroids": (k,),
                }
                for k in CENTROIDS
            ]
            heads = sorted({profile.rank_covering(s) for s in MGQE_HEAD_COVERAGE})
            for head in heads:
                if not 0 < head < v:
                    continue
                out += [
                    {
                        "treatment": Treatment.MGQE,
                        "top_k": v,
                        "tier_shares": (head / v,),
                        "tier_min_counts": (),
                        "num_subspaces": d_sub,
                        "num_centroids": ks,
                    }
                    for ks in MGQE_CENTROIDS
                ]
    return out


def feature_candidates(
    profile: cost.CountProfile,
    base: FeatureConfig,
    quant_penalty: float = cost.DEFAULT_QUANT_PENALTY,
) -> list[Candidate]:
    """Every candidate treatment of one feature, sorted by (bits, cost, label).

    The embedding width stays the spec's (``base.embedding_dim``): the planner chooses
    how each feature is stored, not how wide it is, so the MLP is the same for every
    plan.

    Args:
        profile: The feature's count table.
        base: The feature's entry in the input spec (name, width, combiner).
        quant_penalty: See :func:`trainer.planning.cost.quantization_penalty`.
    """
    out: dict[str, Candidate] = {}
    for settings in _settings(profile, base):
        f = dataclasses.replace(base, **settings)
        label = _label(f, profile.n)
        if label in out:
            continue
        out[label] = Candidate(
            feature=f,
            bits=serving_bits(f, profile.n),
            cost=predicted_cost(f, profile, quant_penalty),
            label=label,
        )
    return sorted(out.values(), key=lambda c: (c.bits, c.cost, c.label))


def spec_entry(feature: FeatureConfig) -> dict[str, Any]:
    """The YAML mapping of one feature: only the fields its treatment reads."""
    t = feature.treatment
    entry: dict[str, Any] = {"name": feature.name}
    if feature.kind.value != "categorical":
        entry["kind"] = feature.kind.value
    entry["treatment"] = t.value
    if t is Treatment.NUMERIC:
        return entry
    if t is Treatment.BUCKETIZED:
        entry |= {
            "embedding_dim": feature.embedding_dim,
            "num_buckets": feature.num_buckets,
        }
        return entry
    entry["embedding_dim"] = feature.embedding_dim
    if feature.uses_dictionary:
        entry["top_k"] = feature.top_k
    if t in (Treatment.HASH, Treatment.DOUBLE_HASH, Treatment.HYBRID):
        entry["hash_buckets"] = feature.hash_buckets
        if t is not Treatment.HASH and feature.hash_combiner != "sum":
            entry["hash_combiner"] = feature.hash_combiner
    if t in (Treatment.DPQ, Treatment.MGQE):
        entry["num_subspaces"] = feature.num_subspaces
        entry["num_centroids"] = list(feature.num_centroids)
    if t is Treatment.MGQE:
        if feature.tier_min_counts:
            entry["tier_min_counts"] = list(feature.tier_min_counts)
        else:
            entry["tier_shares"] = list(feature.tier_shares)
    return entry


def settings_of(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The treatment fields of a spec entry (for comparing two plans)."""
    return {k: v for k, v in entry.items() if k not in ("name", "kind")}
