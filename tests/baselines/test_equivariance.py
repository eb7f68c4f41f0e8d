"""Every baseline is E(3)-equivariant: rotating/reflecting/translating all input frames transforms x(t+1)."""
from __future__ import annotations

import pytest
import torch
from scipy.spatial.transform import Rotation

from diffmd_fast.baselines import REGISTRY, build_baseline
from diffmd_fast.data import FrameBatch
from model_helpers import perturb_

SMALL = {"static": {}, "egnn": {"hidden": 16, "num_layers": 2}, "rf": {"hidden": 16, "num_layers": 2},
         "gmn": {"hidden": 16, "num_layers": 2}, "tfn": {"hidden": 16, "num_layers": 2},
         "se3tr": {"hidden": 16, "num_layers": 2}, "scfnn": {"hidden": 16, "num_layers": 2}}


def _transform(batch: FrameBatch, q: torch.Tensor, t: torch.Tensor) -> FrameBatch:
    f = lambda x: x @ q.T + t  # noqa: E731
    return FrameBatch(z=batch.z, x_prev2=f(batch.x_prev2), x_prev=f(batch.x_prev), x=f(batch.x),
                      x_next=f(batch.x_next), batch=batch.batch, num_graphs=batch.num_graphs)


def _randomised(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return perturb_(build_baseline(name, **SMALL[name]).double().eval())


def test_registry_holds_every_baseline():
    assert set(REGISTRY) == set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("reflect", [False, True])
def test_equivariance(name, reflect, two_molecules):
    model = _randomised(name)
    q = torch.as_tensor(Rotation.random(random_state=3).as_matrix())
    if reflect:
        q = q @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    t = torch.tensor([1.5, -2.0, 0.7], dtype=torch.float64)
    with torch.no_grad():
        out = model(two_molecules)
        out_t = model(_transform(two_molecules, q, t))
    assert out.shape == two_molecules.x.shape
    if name != "static":  # the model really moves atoms, beyond the input frame
        assert (out - two_molecules.x).abs().max() > 1e-4
    torch.testing.assert_close(out_t, out @ q.T + t, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_molecules_do_not_interact(name, two_molecules):
    """A batch of two molecules predicts what each molecule alone predicts (disjoint graphs)."""
    model = _randomised(name)
    first = two_molecules.batch == 0
    alone = FrameBatch(z=two_molecules.z[first], x_prev2=two_molecules.x_prev2[first],
                       x_prev=two_molecules.x_prev[first], x=two_molecules.x[first],
                       x_next=two_molecules.x_next[first], batch=two_molecules.batch[first], num_graphs=1)
    with torch.no_grad():
        model(two_molecules)  # fit any data-dependent scale once, on the same batch for both calls
        torch.testing.assert_close(model(alone), model(two_molecules)[first], atol=1e-10, rtol=1e-10)
