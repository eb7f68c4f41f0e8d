"""SE(3)-Transformer specifics: a stable segment softmax, and invariant, non-uniform attention."""
from __future__ import annotations

import torch
from diffmd_fast.baselines.common import scatter_softmax
from diffmd_fast.baselines.se3tr import SE3Transformer, head_irreps
from diffmd_fast.data import FrameBatch
from model_helpers import orthogonal, perturb_, transform


def test_scatter_softmax_is_a_softmax_per_segment_and_stable():
    logits = torch.tensor([[1.0, 1e4], [2.0, -1e4], [3.0, 0.0], [-5.0, 1e4]], dtype=torch.float64)  # (E, H)
    index = torch.tensor([0, 0, 2, 2])  # segment 1 is empty
    out = scatter_softmax(logits, index, 3)
    assert torch.isfinite(out).all()
    for seg in (0, 2):
        torch.testing.assert_close(out[index == seg], torch.softmax(logits[index == seg], dim=0))


def test_head_irreps_split_evenly():
    for mul, _ in head_irreps(16, 4):
        assert mul % 4 == 0


def _attention(model: SE3Transformer, batch: FrameBatch) -> torch.Tensor:
    """(E, heads) attention weights of the first layer."""
    layer, seen = model.layers[0], []
    inner = layer.attention
    layer.attention = lambda *args: seen.append(inner(*args)) or seen[-1]
    with torch.no_grad():
        model(batch)
    layer.attention = inner
    return seen[0]


def test_attention_is_invariant_and_not_uniform(two_molecules):
    torch.manual_seed(0)
    model = perturb_(SE3Transformer(hidden=16, num_layers=1).double())
    moved = transform(two_molecules, orthogonal(5, reflect=True), torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64))
    alpha = _attention(model, two_molecules)
    torch.testing.assert_close(_attention(model, moved), alpha, atol=1e-8, rtol=1e-8)
    assert alpha.std() > 1e-3  # keys and queries matter: not the plain mean TFN takes
