"""Two fixtures that pin the valence force field's behaviour across refactors, and how they were made.

``tests/fixtures/valence_frames.npz``: a seeded rollout of a tiny ScoreNet whose anchor is the Verlet step
of the valence prior (bonds, angles, torsions, fitted to the bundled ethanol by Boltzmann inversion),
float64, eager, its network removed (AnchorScore: the prior's Verlet MD), with the Langevin
thermostat and the momentum projection (the random draws of a rollout on the path): 3 starts x 20 frames.

``tests/fixtures/prior_run/``: a run directory (checkpoint + config) of a tiny model with
``model.bond_prior = true`` trained for two steps on the bundled ethanol, and
``tests/fixtures/prior_run_scores.npz`` the scores it gave on a fixed batch when it was saved.

Regenerate both (only when a change of behaviour is intended) with
``python tests/valence/golden.py``. The frames are those of bond constants Verlet-matched to the frame
time; the run's checkpoint has no Urey-Bradley tables, so it also pins how a checkpoint without them loads."""
from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures"
FRAMES = FIXTURES / "valence_frames.npz"
RUN = FIXTURES / "prior_run"
SCORES = FIXTURES / "prior_run_scores.npz"
STARTS, FRAME_COUNT, STRIDE = (40, 120, 200), 20, 2
sys.path.insert(0, str(HERE.parent))


def ethanol():
    from diffmd_fast.data import bundled, load_trajectory

    return load_trajectory(bundled("ethanol")).slice(0, 240)


def golden_model():
    """The seeded tiny ScoreNet with its valence prior fitted to ``ethanol()``, float64, eval mode."""
    from model_helpers import TINY

    from diffmd_fast.nn.score_net import ScoreNet
    from diffmd_fast.valence.fit import valence_statistics

    traj = ethanol()
    torch.manual_seed(0)
    net = ScoreNet(replace(TINY, bond_prior=True, prior_torsions=True)).double()
    tables = valence_statistics([traj], net.cfg.max_z, torsions=True)
    net.bond_prior.set_tables(frame_fs=STRIDE * traj.dt_fs, **tables)
    return net.eval()


def golden_frames() -> np.ndarray:
    """(FRAME_COUNT, 3 x 9, 3) float64 Å: the seeded rollout of ``golden_model()`` from STARTS."""
    from diffmd_fast.data.windows import start_batch
    from diffmd_fast.diffusion.samplers import HeunSampler
    from diffmd_fast.diffusion.sde import ConditionalVESDE
    from diffmd_fast.dynamics import LangevinThermostat, MomentumProjection, rollout

    from diffmd_fast.nn.score_net import AnchorScore

    traj = ethanol()
    net = AnchorScore(golden_model())  # the prior's exact score: an untrained network would not hold a molecule
    start = start_batch([traj] * len(STARTS), list(STARTS), stride=STRIDE, dtype=torch.float64)
    frame_fs = STRIDE * traj.dt_fs
    corrections = [LangevinThermostat(300.0, 50.0, frame_fs), MomentumProjection()]
    sampler = HeunSampler("previous", 0.1, 1)  # one exact-score step: the Verlet step of the prior
    gen = torch.Generator().manual_seed(1234)
    result = rollout(net, ConditionalVESDE(), sampler, start, FRAME_COUNT, generator=gen, corrections=corrections,
                     strict=True)
    return result.positions.numpy()


def score_batch(traj, dtype=torch.float64):
    """A fixed start batch, noisy next frames and stds to score a checkpoint on."""
    from diffmd_fast.data.windows import start_batch

    batch = start_batch([traj, traj], [10, 50], stride=STRIDE, dtype=dtype)
    gen = torch.Generator().manual_seed(7)
    std = torch.full((batch.x.shape[0], 1), 0.05, dtype=dtype)
    x_noisy = batch.x_next + std * torch.randn(batch.x.shape, generator=gen, dtype=dtype)
    return batch, x_noisy, std


def run_scores(model, traj) -> np.ndarray:
    from diffmd_fast.valence.topology import with_covalent_bonds
    from diffmd_fast.ops.graph import complete_graph

    batch, x_noisy, std = score_batch(traj)
    graph = with_covalent_bonds(complete_graph(batch.batch), batch.x, batch.z)
    with torch.no_grad():
        return model(batch, x_noisy, std, graph).numpy()


def write_run(tmp: Path) -> None:
    from diffmd_fast.config import Config
    from diffmd_fast.training.loop import train
    from diffmd_fast.training.run import load_run

    traj = ethanol().slice(0, 60)
    overrides = ["model.num_layers=1", "model.hidden=8", "model.heads=2", "model.ffn=16", "model.dropout=0.0",
                 "model.max_z=10", "model.num_fourier=4", "model.bond_prior=true", "train.epochs=1",
                 "train.max_steps=2", "train.batch_size=8", "train.dtype=float64", "train.device=cpu",
                 "train.val_rollout_frames=0", f"train.stride={STRIDE}"]
    torch.manual_seed(0)
    train(Config.from_toml(None, overrides), traj, None, tmp / "run")
    shutil.rmtree(RUN, ignore_errors=True)
    shutil.copytree(tmp / "run", RUN, ignore=shutil.ignore_patterns("metrics.jsonl", "*.tmp"))
    np.savez(SCORES, score=run_scores(load_run(RUN).model, traj))


if __name__ == "__main__":
    import tempfile

    torch.set_num_threads(1)
    FIXTURES.mkdir(exist_ok=True)
    np.savez_compressed(FRAMES, positions=golden_frames())
    with tempfile.TemporaryDirectory() as tmp:
        write_run(Path(tmp))
