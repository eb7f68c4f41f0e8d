"""Every baseline trains on a few hundred real frames, and its rollout beats the static frame.

Why 20-frame rollouts averaged over several starts: at 0.5 fs frames a 20-frame (10 fs) rollout
spans about one C-H vibration, where plain constant-velocity extrapolation only ties with the
static frame; beating it needs learned restoring forces. Averaging over starts (one batched
rollout) keeps the comparison from hinging on one lucky stretch.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from diffmd_fast.evaluation import metrics
from diffmd_fast.baselines import build_baseline, rollout_next_frame, train_next_frame
from diffmd_fast.baselines.common import evaluate_loss
from diffmd_fast.data import make_loader, start_batch

# name: (constructor kwargs, epochs) — tiny models; the e3nn ones (TFN, SE(3)-Transformer) are slower per
# step but learn faster
BUDGET = {
    "egnn": ({"hidden": 16, "num_layers": 2}, 15),
    "rf": ({"hidden": 16, "num_layers": 2}, 15),
    "gmn": ({"hidden": 16, "num_layers": 2}, 15),
    "tfn": ({"hidden": 16, "num_layers": 1}, 5),
    "se3tr": ({"hidden": 16, "num_layers": 1}, 3),
    "scfnn": ({"hidden": 16, "num_layers": 2}, 8),
}
FRAMES = 20
STARTS = list(range(420, 960, 60))  # unseen stretches after the training frames


@pytest.fixture(scope="module")
def val_loader(ethanol):
    return list(make_loader(ethanol, batch_size=200, shuffle=False, frames=[range(400, 1000)], dtype=torch.float64))


@pytest.fixture(scope="module")
def starts(ethanol):
    batch = start_batch([ethanol] * len(STARTS), STARTS, dtype=torch.float64)
    refs = np.stack([ethanol.positions[s + 1: s + 1 + FRAMES] for s in STARTS])  # (S, F, N, 3)
    static = np.mean([metrics.armse_static(r, start=ethanol.positions[s]) for r, s in zip(refs, STARTS)])
    return batch, refs, static


def _rollout_armse(model, batch, refs) -> float:
    gen = batch.absolute(rollout_next_frame(model, batch, FRAMES)).numpy()  # (F, S*N, 3) in the data's frame
    gen = gen.reshape(FRAMES, len(STARTS), -1, 3).transpose(1, 0, 2, 3)  # (S, F, N, 3)
    return float(np.mean([metrics.armse(g, r) for g, r in zip(gen, refs)]))


@pytest.mark.parametrize("name", sorted(BUDGET))
def test_trains_and_beats_static(name, train_loader, val_loader, starts):
    kwargs, epochs = BUDGET[name]
    torch.manual_seed(0)
    model = build_baseline(name, **kwargs).double()
    before = evaluate_loss(model, val_loader)
    hist = train_next_frame(model, train_loader, epochs=epochs, lr=2e-3, progress=False)
    after = evaluate_loss(model, val_loader)
    assert len(hist.train) == epochs and all(np.isfinite(hist.train))
    assert after < before  # learned beyond its constant-velocity start, on unseen frames
    batch, refs, static = starts
    assert _rollout_armse(model, batch, refs) < static


def test_static_frame_needs_no_training(train_loader, starts):
    model = build_baseline("static")
    hist = train_next_frame(model, train_loader, epochs=5, progress=False)
    assert hist.lr == [] and len(hist.train) == 1  # only evaluated
    batch, refs, static = starts
    assert _rollout_armse(model, batch, refs) == pytest.approx(static)


def test_rollout_feeds_back_predictions(two_molecules):
    """A constant-velocity model (EGNN at init) rolled out k frames lands at x + k v exactly."""
    model = build_baseline("egnn", hidden=8, num_layers=1).double()
    with torch.no_grad():
        for layer in model.layers:
            layer.phi_x[-1].weight.zero_()
    out = rollout_next_frame(model, two_molecules, 3)
    v = two_molecules.velocity
    torch.testing.assert_close(out, torch.stack([two_molecules.x + k * v for k in (1, 2, 3)]))


def test_bad_arguments_raise(train_loader, two_molecules):
    model = build_baseline("static")
    with pytest.raises(ValueError, match="frames"):
        rollout_next_frame(model, two_molecules, 0)
    with pytest.raises(ValueError, match="epochs"):
        train_next_frame(model, train_loader, epochs=-1)
    with pytest.raises(ValueError, match="unknown baseline"):
        build_baseline("nope")


def test_max_seconds_ends_training_after_one_step(train_loader, val_loader):
    model = build_baseline("egnn", hidden=8, num_layers=1).double()
    hist = train_next_frame(model, train_loader, val_loader, epochs=50, progress=False, max_seconds=1e-9)
    assert len(hist.train) == 1 and len(hist.val) == 1  # the cut epoch is still recorded and validated
