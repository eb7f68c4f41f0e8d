"""Metrics on hand-made trajectories whose values are worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from diffmd_fast.evaluation import metrics

# A linear H-H-H chain along x, 0.74 Å bonds (H covalent radius 0.31 Å: 0.74 < 1.2 × 0.62 = 0.744),
# and the outer atoms 1.48 Å apart (not bonded).
CHAIN = np.array([[0.0, 0.0, 0.0], [0.74, 0.0, 0.0], [1.48, 0.0, 0.0]])
H3 = np.array([1, 1, 1])


def _still(frames: int = 6) -> np.ndarray:
    return np.repeat(CHAIN[None], frames, axis=0).copy()  # (T, 3, 3)


def test_uniform_shift_gives_armse_equal_to_shift():
    ref = np.random.default_rng(0).normal(size=(5, 4, 3))
    shift = np.array([0.3, -0.4, 0.0])  # |shift| = 0.5 Å
    assert metrics.armse(ref + shift, ref) == pytest.approx(0.5)
    assert metrics.armse(ref, ref) == 0.0


def test_armse_averages_per_frame_rmsd():
    ref = np.zeros((2, 2, 3))
    gen = ref.copy()
    gen[1, 0, 0] = 2.0  # frame 1: one of two atoms off by 2 → RMSD sqrt(4/2)
    np.testing.assert_allclose(metrics.per_frame_rmsd(gen, ref), [0.0, np.sqrt(2.0)])
    assert metrics.armse(gen, ref) == pytest.approx(np.sqrt(2.0) / 2)


def test_static_and_mean_structure_baselines():
    ref = np.zeros((3, 1, 3))
    ref[:, 0, 0] = [0.0, 1.0, 2.0]
    assert metrics.armse_static(ref) == pytest.approx((0 + 1 + 2) / 3)
    assert metrics.armse_static(ref, start=np.array([[2.0, 0.0, 0.0]])) == pytest.approx(1.0)
    assert metrics.armse_mean_structure(ref) == pytest.approx((1 + 0 + 1) / 3)


def test_bonds_from_reference_finds_the_two_chain_bonds():
    bonds = metrics.bonds_from_reference(_still(), H3)
    np.testing.assert_array_equal(bonds, [[0, 1], [1, 2]])


def test_bond_ranges_are_min_and_max_over_reference():
    ref = _still(3)
    ref[1, 2, 0] += 0.1  # bond 1-2 is 0.84 Å in frame 1
    ranges = metrics.bond_ranges(ref, np.array([[0, 1], [1, 2]]))
    np.testing.assert_allclose(ranges, [[0.74, 0.74], [0.74, 0.84]])


def test_stretch_of_0p6_at_frame_3_gives_stability_3():
    ref = _still()
    bonds = metrics.bonds_from_reference(ref, H3)
    ranges = metrics.bond_ranges(ref, bonds)
    gen = _still()
    gen[3:, 2, 0] += 0.6  # bond 1-2 stretched by 0.6 Å > 0.5 Å from frame 3 on
    assert metrics.stability_frames(gen, bonds, ranges) == 3
    # 3 broken frames of 6, one of two bonds: 3 of 12 (frame, bond) pairs
    assert metrics.bond_violation_fraction(gen, bonds, ranges) == pytest.approx(3 / 12)
    gen_small = _still()
    gen_small[3:, 2, 0] += 0.4  # within tolerance: never broken
    assert metrics.stability_frames(gen_small, bonds, ranges) == 6
    assert metrics.bond_violation_fraction(gen_small, bonds, ranges) == 0.0


def test_compression_also_counts_as_violation():
    ref = _still()
    bonds = metrics.bonds_from_reference(ref, H3)
    gen = _still()
    gen[0, 0, 0] += 0.6  # bond 0-1 squeezed to 0.14 Å in frame 0
    assert metrics.stability_frames(gen, bonds, metrics.bond_ranges(ref, bonds)) == 0


def test_identical_distance_histograms_give_jsd_0():
    ref = np.random.default_rng(1).normal(size=(10, 5, 3))
    assert metrics.distance_jsd(ref, ref) == pytest.approx(0.0, abs=1e-12)


def test_disjoint_distance_histograms_give_jsd_1():
    ref = _still()  # distances 0.74, 0.74, 1.48
    gen = 3.0 * ref  # distances 2.22, 2.22, 4.44: no shared bin
    assert metrics.distance_jsd(gen, ref, bins=50) == pytest.approx(1.0)


def test_distance_jsd_keeps_mass_beyond_r_max():
    ref = _still()
    pg, pr, edges = metrics.distance_histograms(3.0 * ref, ref, bins=10, r_max=2.0)
    assert pg.sum() == pytest.approx(1.0) and pg[-1] == pytest.approx(1.0)
    assert edges[-1] == 2.0 and pr.sum() == pytest.approx(1.0)


def test_rmsf_of_an_oscillating_atom():
    traj = np.zeros((4, 2, 3))
    traj[:, 1, 0] = [1.0, -1.0, 1.0, -1.0]  # ±1 Å about 0
    np.testing.assert_allclose(metrics.rmsf(traj), [0.0, 1.0])
    assert metrics.rmsf_error(np.zeros((4, 2, 3)), traj) == pytest.approx(0.5)


def test_mobility_detects_a_frozen_rollout():
    moving = np.zeros((9, 2, 3))
    moving[:, :, 0] = 0.01 * np.arange(9)[:, None]  # 0.01 Å/frame
    m = metrics.mobility(moving)
    assert m.mean_displacement == pytest.approx(0.01) and m.moving
    frozen = moving.copy()
    frozen[4:] = frozen[4]  # stops after frame 4
    f = metrics.mobility(frozen)
    assert not f.moving and f.late_displacement == 0.0


def test_evaluate_reports_every_metric():
    rng = np.random.default_rng(2)
    ref = _still(8) + 0.02 * rng.normal(size=(8, 3, 3))
    out = metrics.evaluate(ref + np.array([0.1, 0.0, 0.0]), ref, H3)
    for key in ["armse", "armse_static", "armse_mean_structure", "stability_frames", "bond_violation_fraction",
                "distance_jsd", "rmsf_error", "mobility", "frames"]:
        assert key in out
    assert out["armse"] == pytest.approx(0.1)  # every atom off by 0.1 Å
    assert out["stability_frames"] == 8 and out["frames"] == 8
    assert out["distance_jsd"] == pytest.approx(0.0, abs=1e-12)  # a shift keeps all distances
    assert out["rmsf_error"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "gen, ref, match",
    [
        (np.zeros((2, 3)), np.zeros((2, 3)), "shape"),
        (np.zeros((2, 3, 3)), np.zeros((3, 3, 3)), "same shape"),
        (np.full((2, 3, 3), np.nan), np.zeros((2, 3, 3)), "NaN"),
    ],
)
def test_bad_inputs_raise_clear_errors(gen, ref, match):
    with pytest.raises(ValueError, match=match):
        metrics.armse(gen, ref)


def test_bad_numbers_raise():
    with pytest.raises(ValueError, match="numbers"):
        metrics.bonds_from_reference(_still(), np.array([1, 1]))


# ---- atom order ---------------------------------------------------------------------------------

ETHANOL_Z = np.array([6, 6, 8, 1, 1, 1, 1, 1, 1])


def _molecule(seed: int = 3) -> np.ndarray:
    """(9, 3) Å: nine atoms at least 1.5 Å apart, like the atoms of a small molecule."""
    rng = np.random.default_rng(seed)
    while True:
        x = rng.uniform(-2.5, 2.5, size=(9, 3))
        if min(np.linalg.norm(x[i] - x[j]) for i in range(9) for j in range(i)) > 1.5:
            return x


def test_element_order_difference_tells_another_order_from_another_molecule():
    assert metrics.element_order_difference(ETHANOL_Z, ETHANOL_Z) is None
    swapped = ETHANOL_Z[[0, 2, 1, 3, 4, 5, 6, 7, 8]]
    assert metrics.element_order_difference(swapped, ETHANOL_Z) == (
        "the reference's atoms (C2H6O) in another order: atom 1 is O, in the reference C")
    assert "not the same molecule" in metrics.element_order_difference(ETHANOL_Z[:-1], ETHANOL_Z)
    assert "not the same molecule" in metrics.element_order_difference(np.r_[ETHANOL_Z[:-1], 6], ETHANOL_Z)


def test_atom_order_finds_two_swapped_atoms_of_one_element():
    ref = _molecule()
    moved = ref + 0.03 * np.random.default_rng(0).normal(size=ref.shape) + np.array([5.0, 0.0, 0.0])
    fit = metrics.atom_order(moved[[0, 1, 2, 8, 4, 5, 6, 7, 3]], ref, ETHANOL_Z)
    assert fit.permuted and fit.moves() == [(8, 3), (3, 8)]
    assert fit.rmsd_reordered < 0.1 < 1.0 < fit.rmsd_given  # the shift of 5 Å is not counted
    plain = metrics.atom_order(moved, ref, ETHANOL_Z)
    assert not plain.permuted and plain.moves() == [] and plain.rmsd_given == plain.rmsd_reordered


def test_atom_order_does_not_call_motion_a_permutation():
    ref = _molecule()
    rng = np.random.default_rng(1)
    blown = ref.copy()
    blown[8] += np.array([2.0, 0.0, 0.0])  # one atom flies off: no relabelling makes that fit
    assert not metrics.atom_order(blown, ref, ETHANOL_Z).permuted
    # another conformation that matches only up to a relabelling, but 0.4 Å off: not in phase with ref
    far = ref[[0, 1, 2, 8, 4, 5, 6, 7, 3]] + 0.4 / np.sqrt(3) * rng.choice([-1.0, 1.0], size=ref.shape)
    fit = metrics.atom_order(far, ref, ETHANOL_Z)
    assert fit.moves() == [(8, 3), (3, 8)] and fit.rmsd_reordered > 0.3 and not fit.permuted
