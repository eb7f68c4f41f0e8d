"""Score-based diffusion over the next frame: the SDEs (the conditional VE SDE of Eqs. 6-9), the
denoising score-matching loss, and the samplers (probability-flow ODE; predictor-corrector of
Algorithm 1). Samplers and the loss see an SDE only through its abstract interface."""
from .losses import dsm_loss
from .samplers import Sampler, make_sampler
from .sde import SDE, make_sde

__all__ = ["SDE", "Sampler", "dsm_loss", "make_sde", "make_sampler"]
