"""Training DiffMD: the loop (single process or torchrun/DDP), atomic checksummed checkpoints with
the resolved config beside them, and the torch.distributed helpers."""
from .checkpoint import CheckpointError, load_latest, save_checkpoint
from .loop import TrainResult, train

__all__ = ["CheckpointError", "TrainResult", "load_latest", "save_checkpoint", "train"]
