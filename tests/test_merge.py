"""bnbook.derive.merge: the shard-merge formulas, proved for symbolic sizes."""

from __future__ import annotations

import numpy as np
import pytest

from bnbook.derive import merge
from bnbook.derive.proof import prove_equal


@pytest.mark.parametrize("power", [1, 2])
def test_split_sum_proof_holds(power):
    proof = merge.split_sum_proof(power)
    assert proof.holds and proof.method == "simplify"


def test_deviation_sum_proof_holds():
    proof = merge.deviation_sum_proof()
    assert proof.holds and proof.method == "simplify"


@pytest.mark.parametrize("k", [1, 2, 3])
def test_merge_proofs_hold_for_symbolic_sizes(k):
    proofs = merge.merge_proofs(k)
    assert set(proofs) == ({"mean", "m2", "pairwise"} if k == 2 else {"mean", "m2"})
    assert all(p.holds and p.method == "simplify" for p in proofs.values())


def test_merge_without_the_correction_term_is_wrong():
    shards = merge.shard_symbols(2)
    naive = sum(s.m2 for s in shards)
    assert not prove_equal(naive, merge.concatenation(shards)[2]).holds


def test_shard_symbols_match_numbers():
    """The symbolic formulas, evaluated, give numpy's statistics of real shards."""
    rng = np.random.default_rng(0)
    parts = [rng.normal(size=n) for n in (2, 5)]
    shards = merge.shard_symbols(2)
    values = {}
    for s, p in zip(shards, parts, strict=True):
        values.update({s.n: len(p), s.s: p.sum(), s.q: (p**2).sum()})
    whole = np.concatenate(parts)
    mean = float(merge.merged_mean(shards).subs(values))
    m2 = float(merge.merged_m2(shards).subs(values))
    assert mean == pytest.approx(whole.mean(), abs=1e-12)
    assert m2 == pytest.approx(((whole - whole.mean()) ** 2).sum(), abs=1e-12)


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_shard_symbols_rejects_bad_count(k):
    with pytest.raises(ValueError, match="positive int"):
        merge.shard_symbols(k)
