"""The score network: one equivariant geometric layer (EGL, Eqs. 12-17) and the EGT that stacks
them into s_θ(x^(t+1)(s), s | x^(t), x^(t-1), x^(t-2)) (Sec. "Equivariant geometric transformer")."""
from .egl import EGL
from .score_net import ScoreNet

__all__ = ["EGL", "ScoreNet"]
