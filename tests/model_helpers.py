"""Small score networks and frame batches shared by the nn/ and dynamics/ tests."""
import torch

from diffmd_fast.config import ModelConfig
from diffmd_fast.data.batch import FrameBatch
from diffmd_fast.nn.score_net import ScoreNet

# "fused" falls back to the reference op (with a warning) when the extension is not built
TINY = ModelConfig(num_layers=2, heads=2, hidden=16, ffn=32, dropout=0.0, max_z=10, num_fourier=4,
                   backend="fused")


def random_batch(sizes=(5, 4), seed=0, dtype=torch.float64) -> FrameBatch:
    gen = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    x = 1.2 * torch.randn(n, 3, generator=gen, dtype=dtype)
    v = 0.02 * torch.randn(n, 3, generator=gen, dtype=dtype)
    a = 0.002 * torch.randn(n, 3, generator=gen, dtype=dtype)
    x_prev = x - v
    x_prev2 = x_prev - (v - a)
    z = torch.randint(1, 9, (n,), generator=gen)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    x_next = x + v + 0.01 * torch.randn(n, 3, generator=gen, dtype=dtype)
    return FrameBatch(z=z, x_prev2=x_prev2, x_prev=x_prev, x=x, x_next=x_next, batch=batch, num_graphs=len(sizes))


def transform(b: FrameBatch, q: torch.Tensor, t: torch.Tensor) -> FrameBatch:
    f = lambda p: p @ q.T + t  # noqa: E731
    return FrameBatch(z=b.z, x_prev2=f(b.x_prev2), x_prev=f(b.x_prev), x=f(b.x), x_next=f(b.x_next),
                      batch=b.batch, num_graphs=b.num_graphs)


def orthogonal(seed: int, reflect: bool) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    if (torch.det(q) < 0) != reflect:
        q = q @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    return q


def make_net(cfg: ModelConfig = TINY) -> ScoreNet:
    """A double-precision net with the EGL displacement and the gate switched fully on (at
    initialisation they are 0 and constant, which would leave the EGL stack untested)."""
    torch.manual_seed(0)
    net = ScoreNet(cfg).double()
    with torch.no_grad():
        net.delta_scale.fill_(1.0)
        if net.gate is not None:
            net.gate.weight.normal_()
    return net


def perturb_(model: torch.nn.Module, scale: float = 0.2) -> torch.nn.Module:
    """``model`` with scale × N(0, 1) added to every weight (global RNG), in place: leaves the
    near-identity inits (constant velocity, tiny coordinate messages) so every term matters."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model


def water_box(edge: float = 6.2, seed: int = 0):
    """ase.Atoms: 8 randomly turned water molecules on a 2 x 2 x 2 lattice in a periodic cubic cell of
    ``edge`` Å (liquid density at ~6.2 Å), positions wrapped into the cell."""
    import numpy as np
    from ase import Atoms
    from ase.build import molecule

    rng = np.random.default_rng(seed)
    box = Atoms(cell=[edge] * 3, pbc=True)
    for corner in np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)]) * edge / 2 + 0.8:
        w = molecule("H2O")
        w.rotate(rng.uniform(0, 360), rng.normal(size=3))
        w.translate(corner)
        box += w
    box.wrap()
    return box
