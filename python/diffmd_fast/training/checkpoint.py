"""Atomic, verifiable checkpoints so that a killed run resumes exactly where it stopped.

Each checkpoint ``ckpt_<step>.pt`` is written to a temporary file, fsynced and moved into place
with os.replace (a reader never sees half a file); a ``.sha256`` sidecar, written first the same
way, lets a truncated or corrupted file be told apart from a good one. The newest ``keep`` are
kept; loading walks from the newest to the oldest and uses the first that verifies, warning about
each bad one. The resolved config is saved beside them (config.json / config.toml).
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..data.writers import sha256

REQUIRED_KEYS = ("model", "optimizer", "scheduler", "rng", "epoch", "batch_in_epoch", "step", "config")
_NAME = re.compile(r"ckpt_(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """No usable checkpoint although some exist; the message lists every file and its problem."""


def _atomic_write(path: Path, writer) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        writer(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoint files in ``directory``, oldest first (by step)."""
    d = Path(directory)
    found = [(int(m.group(1)), p) for p in d.glob("ckpt_*.pt") if (m := _NAME.search(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(directory: str | Path, state: dict[str, Any], config: Config, keep: int = 2) -> Path:
    """Write ``state`` (must hold REQUIRED_KEYS) as ckpt_<step>.pt, keep the newest ``keep``."""
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    config.save(d)
    path = d / f"ckpt_{int(state['step']):09d}.pt"
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    digest = sha256(tmp)
    _atomic_write(path.with_name(path.name + ".sha256"), lambda f: f.write(digest.encode()))
    os.replace(tmp, path)
    for old in list_checkpoints(d)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
        old.with_name(old.name + ".sha256").unlink(missing_ok=True)
    return path


def verify_and_load(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load one checkpoint, raising CheckpointError naming the file if it is truncated or corrupt."""
    sidecar = path.with_name(path.name + ".sha256")
    if not sidecar.is_file():
        raise CheckpointError(f"{path}: checksum file {sidecar.name} is missing")
    if sha256(path) != sidecar.read_text().strip():
        raise CheckpointError(f"{path}: checksum mismatch (file truncated or corrupted)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # torch raises several types for a bad zip archive
        raise CheckpointError(f"{path}: cannot be read ({type(err).__name__}: {err})") from err
    missing = [k for k in REQUIRED_KEYS if k not in state] if isinstance(state, dict) else list(REQUIRED_KEYS)
    if missing:
        raise CheckpointError(f"{path}: not a diffmd_fast checkpoint (missing {missing})")
    return state


def load_latest(directory: str | Path, map_location: Any = "cpu") -> tuple[dict[str, Any], Path] | None:
    """Newest checkpoint that verifies, or None when the directory holds none.

    Bad newer files are skipped with a RuntimeWarning each; if every file is bad, CheckpointError
    says so in one line that names every file and its problem, newest first (e.g. ``no usable
    checkpoint in run: ckpt_000000010.pt: checksum mismatch (file truncated or corrupted)``)."""
    problems = []  # (file, what is wrong with it)
    for path in reversed(list_checkpoints(directory)):
        try:
            found = verify_and_load(path, map_location), path
        except CheckpointError as err:
            problems.append((path, str(err)))
            continue
        for _, problem in problems:  # worth a warning only when an older checkpoint is used instead
            warnings.warn(f"skipping unusable checkpoint {problem}; using the older {path.name} (from step "
                          f"{found[0].get('step', '?')}) instead", RuntimeWarning, stacklevel=2)
        return found
    if problems:
        # one line (the command line shows an error's first line only): each file by its name, since
        # the folder is named once, and its problem with any line breaks of a torch error folded
        reasons = [path.name + " ".join(msg.removeprefix(str(path)).split()) for path, msg in problems]
        raise CheckpointError(f"no usable checkpoint in {directory}: " + "; ".join(reasons))
    return None
