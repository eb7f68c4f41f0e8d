"""SCFNN-style self-consistent next-frame model (after Gao & Remsing 2022, Nat. Commun. 13, 1572).

The paper: "Self-consistent determination of long-range electrostatics in neural network
potentials". Its SCFNN predicts the Wannier centres' response to the electric field of the current
configuration; because that field depends on the predicted centres themselves, the prediction is
fed back as an input and the same network is applied again until the prediction is self-consistent.

Adaptation to next-frame prediction (ours; the paper has no next-frame version): the quantity that
is refined self-consistently is the guess of the next frame, x̂(t+1). One pass of a weight-shared
EGNN (egnn.py's layers, velocity variant) takes the current guess as input through the guessed
displacement d = x̂(t+1) - x(t), (N, 3) Å:
    invariant:   h_i = embed(z_i, |v_i|/s) + ψ(|d_i| / s)
    equivariant: d takes the place of egnn.py's velocity in the coordinate update,
                 x_i ← x_i + φ_v(h_i) d_i + s · mean_j x̂_ij φ_x(m_ij)   (per layer, from x(t))
and its output is the next guess. The loop starts at constant velocity, x̂⁰ = x(t) + v(t), runs a
fixed number of passes K (default 3) with the same weights, and returns the last guess; gradients
flow through every pass (unrolled, no fixed-point solver or convergence test). s is the fitted
speed scale (Å/frame). At init φ_v = 1/num_layers and φ_x ≈ 0, so each pass returns its input
guess: the untrained model is constant-velocity extrapolation, like the other baselines. Distances,
the bonded flag and the messages use frame t only; the guess enters through d alone. Everything is
built from invariants times relative vectors or d, so the output is E(3)-equivariant.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.batch import FrameBatch
from .common import Edges, NextFrameModel, NodeEmbedding, make_edges, mlp, register
from .egnn import EGNNLayer


@register("scfnn")
class SCFNN(NextFrameModel):
    def __init__(self, hidden: int = 64, num_layers: int = 4, iterations: int = 3):
        super().__init__()
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        self.iterations = iterations
        self.embed = NodeEmbedding(hidden)
        self.guess_emb = mlp(1, hidden, hidden)  # ψ: scaled |guessed displacement| -> node features
        self.layers = nn.ModuleList(EGNNLayer(hidden, num_layers) for _ in range(num_layers))

    def refine(self, batch: FrameBatch, edges: Edges, h0: torch.Tensor, guess: torch.Tensor) -> torch.Tensor:
        """One pass of the shared network: guess (N, 3) Å of x(t+1) -> the next guess (N, 3) Å.

        h0 (N, hidden) is ``self.embed(batch)``; edges are ``make_edges(batch)`` (frame t).
        """
        unit = self.embed.speed_scale.scale.to(guess.dtype)  # Å/frame
        d = guess - batch.x  # (N, 3) Å
        h = h0 + self.guess_emb(d.norm(dim=-1, keepdim=True) / unit)  # (N, hidden)
        x = batch.x
        for layer in self.layers:
            x, h = layer(x, d, h, edges.recv, edges.send, edges.bonded, unit)
        return x

    def forward(self, batch: FrameBatch) -> torch.Tensor:
        edges = make_edges(batch)
        h0 = self.embed(batch)  # (N, hidden); fits the speed scale on first use
        guess = batch.x + batch.velocity  # (N, 3) Å: constant-velocity start
        for _ in range(self.iterations):
            guess = self.refine(batch, edges, h0, guess)
        return guess
