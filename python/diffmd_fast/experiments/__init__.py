"""The paper's experiments: one harness that trains and rolls out DiffMD and the baselines on the
same split (``harness``), and Tables 1 and 2 built from it (``tables``)."""
from .harness import ExperimentConfig, ModelResult, compare

__all__ = ["ExperimentConfig", "ModelResult", "compare"]
