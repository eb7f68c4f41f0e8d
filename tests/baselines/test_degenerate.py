"""Degenerate geometry: every baseline stays finite, and training refuses NaN."""
import pytest
import torch

from diffmd_fast.baselines.common import REGISTRY, build_baseline, train_next_frame
from diffmd_fast.data.batch import FrameBatch


def _coincident(n=5) -> FrameBatch:
    zero = torch.zeros(n, 3)
    return FrameBatch(z=torch.tensor([6, 6, 8, 1, 1][:n]), x_prev2=zero, x_prev=zero, x=zero, x_next=zero + 0.1,
                      batch=torch.zeros(n, dtype=torch.int64), num_graphs=1)


@pytest.mark.parametrize("name", sorted(set(REGISTRY) - {"static"}))
def test_finite_output_and_gradients_on_coincident_atoms(name):
    torch.manual_seed(0)
    model = build_baseline(name, hidden=16, num_layers=2)
    pred = model(_coincident())
    (pred - 1.0).square().sum().backward()
    assert torch.isfinite(pred).all()
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad


def test_training_stops_on_non_finite_loss():
    model = build_baseline("egnn", hidden=8, num_layers=1)
    good = _coincident()
    poisoned = FrameBatch(**{**good.__dict__, "x_next": torch.full_like(good.x, float("nan"))})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        train_next_frame(model, [good, poisoned], epochs=1, progress=False)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k]) and "scale" not in k]
    assert len(changed) > 0  # the good batch trained; the poisoned one raised before its step
