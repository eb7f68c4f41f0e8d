"""Streaming a rollout to disk with exact resumption: ``FrameSink``, a Stepper observer, owns a
rollout's output files.

Every molecule of the batch gets its own file (extended XYZ, or ASE's binary .traj), named after
the output path (``output_bases``). The sink
buffers ``chunk`` frames, appends them to the files, fsyncs them and then writes, atomically, a
sidecar ``state.pt`` holding the stepper's state (windows, stop reports, RNG), the number of frames
and bytes of every file and the settings of the command. Memory stays bounded by the chunk
whatever the length of the run.

A run killed at any moment is continued by ``resume``: the files are cut back to the lengths the
sidecar recorded (a kill during an append leaves a partial tail; for .traj the header, which an
append rewrites, is restored too) and the stepper continues from the recorded state, so the files
end byte-identical to an uninterrupted run's, provided that everything written is deterministic:
the seeded generator drives the sampler noise and the thermostat, and no timestamps are written.

A stopped molecule's file keeps only its valid frames (a molecule stopped at its first frame gets
no file). Each frame carries ``time_fs``, the simulated time since the start frame (fs), and, for
a start from a reference trajectory, ``start_frame``, that frame's index in it. Files
left by another run are never replaced without ``overwrite``; at the end ``write_npz`` can add one
npz per molecule with the run's provenance, read back from the streamed file.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import ase.io
import numpy as np
import torch
from ase import Atoms

from ..data.writers import atomic_path

FORMATS = {".extxyz": "extxyz", ".xyz": "extxyz", ".traj": "traj"}
STREAM_SUFFIX = {".npz": ".extxyz", ".extxyz": ".extxyz", ".xyz": ".xyz", ".traj": ".traj"}  # output -> streamed
# An ASE .traj (ULM) file starts with a 48-byte header (tag, version, item count, offsets
# position) that every append rewrites in place; the rest only grows.
_ULM_HEADER = 48


class ResumeError(ValueError):
    """The sidecar does not fit this command or these files; the message says how to proceed."""


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_state(state: dict, path: Path) -> None:
    """torch.save ``state`` to ``path`` atomically and durably (temp file, fsync, rename)."""
    with atomic_path(path, ".pt") as tmp:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())


def output_bases(out: str | os.PathLike, labels: Sequence, suffixed: bool) -> list[Path]:
    """Path stems of each trajectory's files: ``out`` without its final suffix (every other dot
    kept: gen.T300.extxyz -> gen.T300), plus _t<label> for each of several starts."""
    stem = str(out)[: len(str(out)) - len(Path(out).suffix)]
    return [Path(f"{stem}_t{label}") if suffixed else Path(stem) for label in labels]


class FrameSink:
    """Stream the frames of every molecule of a Stepper to the files of the output path ``out``: one
    per molecule, in batch order, ``output_bases`` + the streamed suffix (STREAM_SUFFIX: an .npz
    output streams as extended XYZ, and write_npz adds the npz at the end).

    labels: (B,) each molecule's label (its start frame, None for one structure), the _t<label>
    suffix of its files when ``suffixed``; numbers: (N,) atomic numbers of the stepper's start batch;
    batch: (N,) molecule of each atom; frame_fs: the model's frame time (fs); settings: a picklable
    description of the command (a resume with other settings is refused); frames: the frames asked
    for (a run asked for more than a finished one continues it); chunk: frames buffered
    between appends (and sidecar writes); the resume sidecar is ``out`` + ``rank_tag`` + .state.pt.
    Raises ValueError for an unknown suffix or a label count that is not the molecule count."""

    def __init__(self, out: str | os.PathLike, labels: Sequence, numbers: np.ndarray, batch: np.ndarray,
                 frame_fs: float, settings: dict, *, frames: int | None = None, suffixed: bool = False,
                 rank_tag: str = "", chunk: int = 500) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1 frame, got {chunk}")
        out = Path(out)
        if out.suffix not in STREAM_SUFFIX:
            raise ValueError(f"{out}: the suffix must be one of {', '.join(STREAM_SUFFIX)}")
        self.labels, self.bases = list(labels), output_bases(out, labels, suffixed)
        self.paths = [Path(f"{b}{STREAM_SUFFIX[out.suffix]}") for b in self.bases]
        self.npz_paths = [Path(f"{b}.npz") for b in self.bases]
        batch = np.asarray(batch)
        if len(self.paths) != int(batch.max()) + 1:
            raise ValueError(f"{len(self.paths)} output paths for {int(batch.max()) + 1} molecules")
        self.atoms_of = [np.flatnonzero(batch == b) for b in range(len(self.paths))]
        self.numbers = [np.asarray(numbers)[idx] for idx in self.atoms_of]
        self.frame_fs, self.settings, self.chunk = frame_fs, settings, chunk
        self.state_path = Path(f"{out}{rank_tag}.state.pt")
        self.target = frames
        self.frames = [0] * len(self.paths)  # frames in each file
        self._buffer: list[tuple[int, np.ndarray, list[bool]]] = []

    def __call__(self, stepper) -> None:
        """Observer: keep the newest frame of every molecule still running; append every ``chunk``."""
        active = [r is None for r in stepper.stopped]
        # in the data's frame: the stepper works on molecules centred in float64 (FrameBatch.origin)
        self._buffer.append((stepper.t, stepper.start.absolute(stepper.positions.detach()).cpu().numpy().copy(), active))
        if len(self._buffer) >= self.chunk:
            self.flush(stepper)

    def _atoms(self, b: int, t: int, positions: np.ndarray) -> Atoms:
        info = {"time_fs": t * self.frame_fs}
        if self.labels[b] is not None:  # the reference frame it started from: what evaluate aligns it with
            info["start_frame"] = int(self.labels[b])
        return Atoms(numbers=self.numbers[b], positions=positions[self.atoms_of[b]], info=info)

    def _append(self, b: int, frames: list[Atoms]) -> None:
        path = self.paths[b]
        path.parent.mkdir(parents=True, exist_ok=True)
        if FORMATS[path.suffix] == "traj":
            with ase.io.Trajectory(path, "a") as out:
                for atoms in frames:
                    out.write(atoms)
        else:
            with open(path, "a") as out:
                ase.io.write(out, frames, format="extxyz")
        _fsync(path)  # on disk before the sidecar that counts it

    def _record(self, b: int) -> dict:
        path = self.paths[b]
        if not path.exists():
            return {"frames": 0, "bytes": 0, "head": b""}
        with open(path, "rb") as fh:
            head = fh.read(_ULM_HEADER) if FORMATS[path.suffix] == "traj" else b""
        return {"frames": self.frames[b], "bytes": path.stat().st_size, "head": head}

    def flush(self, stepper, done: bool = False) -> None:
        """Append the buffered frames, then record the stepper state in the sidecar."""
        for b in range(len(self.paths)):
            frames = [self._atoms(b, t, pos) for t, pos, active in self._buffer if active[b]]
            if frames:
                self._append(b, frames)
                self.frames[b] += len(frames)
        self._buffer.clear()
        save_state({"settings": self.settings, "frames": self.target, "stepper": stepper.state_dict(), "done": done,
                    "files": [self._record(b) for b in range(len(self.paths))]}, self.state_path)

    def finish(self, stepper, npz: tuple[str, dict] | None = None) -> list[str]:
        """Write what is buffered; with ``npz`` = (name, provenance), write_npz; then mark the sidecar
        complete, last, so that a run stopped before its npz is on disk resumes (with no frames left to
        make) and writes it. Returns the paths written (streamed files with frames, then npz files)."""
        self.flush(stepper)
        written = [str(p) for p, n in zip(self.paths, self.frames) if n > 0]
        written += self.write_npz(stepper, *npz) if npz is not None else []
        self.flush(stepper, done=True)  # nothing buffered now: the sidecar alone, marked complete
        return written

    def resume(self, stepper, overwrite: bool = False) -> str:
        """Prepare the files for this run: "fresh" (no sidecar: old files removed), "resumed" (files
        cut back to the sidecar and ``stepper`` restored) or "done" (the sidecar marks this command
        complete; nothing changed). ``overwrite``: replace the outputs and sidecar of another run.
        Raises ValueError when outputs exist without a sidecar (another run's) and not ``overwrite``,
        and ResumeError when the sidecar belongs to another command or the files are shorter than it records."""
        if overwrite:
            self.state_path.unlink(missing_ok=True)
        elif not self.state_path.exists():
            existing = [str(p) for p in self.paths + self.npz_paths if p.exists()]
            if existing:
                one = len(existing) == 1
                raise ValueError(f"{', '.join(existing)} already exist{'s' if one else ''} and belong{'s' if one else ''} "
                                 "to no unfinished run of this command; pass --overwrite to replace, or choose another --out")
        if not self.state_path.exists():
            for p in self.paths + self.npz_paths:  # an npz of an earlier run must not pass for this one's
                p.unlink(missing_ok=True)
            return "fresh"
        try:
            state = torch.load(self.state_path, map_location="cpu", weights_only=False)
        except Exception as err:  # torch raises several types for a damaged file
            raise ResumeError(f"{self.state_path}: cannot be read ({type(err).__name__}); "
                              "remove it to start over") from err
        settings = dict(state["settings"])
        target = state.get("frames", settings.pop("frames", None))  # sidecars that kept it among the settings
        if settings != self.settings:
            diff = sorted(k for k in set(settings) | set(self.settings) if settings.get(k) != self.settings.get(k))
            was = ", ".join(f"{k}={settings.get(k)!r}" for k in diff)
            raise ResumeError(f"{self.state_path} belongs to a run with other settings ({was}); rerun that command "
                              f"to continue it, or remove the file (and its outputs) to start over")
        made = int(state["stepper"]["t"])
        if self.target is not None and self.target < made:
            raise ResumeError(f"{self.state_path} records {made} frames already, more than the {self.target} asked for; "
                              f"ask for at least {made}, or remove it (and its outputs) to start over")
        for p, rec in zip(self.paths, state["files"]):  # a finished run's files too: "complete" must mean on disk
            size = p.stat().st_size if p.exists() else 0
            if size < rec["bytes"]:
                raise ResumeError(f"{p} has {size} bytes, the sidecar {self.state_path} recorded {rec['bytes']} (the "
                                  "output was removed or cut); remove the sidecar to generate again")
        if state["done"] and (self.target is None or self.target == target):
            stepper.load_state_dict(state["stepper"])
            self.frames = [f["frames"] for f in state["files"]]
            return "done"
        if state["done"]:  # a finished run asked for more frames: continued; its npz described the shorter run
            for p in self.npz_paths:
                p.unlink(missing_ok=True)
        for p, rec in zip(self.paths, state["files"]):
            if rec["bytes"] == 0:
                p.unlink(missing_ok=True)
                continue
            with open(p, "r+b") as fh:
                fh.truncate(rec["bytes"])
                fh.write(rec["head"])  # .traj: the header as it was; extxyz: nothing
        stepper.load_state_dict(state["stepper"])
        self.frames = [f["frames"] for f in state["files"]]
        return "resumed"

    def write_npz(self, stepper, name: str, provenance: dict) -> list[str]:
        """One npz per molecule with frames (its streamed file read back), named ``name`` (-t<label>),
        with ``provenance`` plus its start label and stop report; returns the paths written."""
        from ..data import Trajectory, load_trajectory, save_npz

        written = []
        for b, (path, label) in enumerate(zip(self.npz_paths, self.labels)):
            if self.frames[b] == 0:
                continue
            report = stepper.stopped[b]
            streamed = load_trajectory(self.paths[b], dt_fs=self.frame_fs)
            traj = Trajectory(positions=streamed.positions, numbers=streamed.numbers, dt_fs=self.frame_fs,
                              name=name if label is None else f"{name}-t{label}",
                              provenance={**provenance, "start_frame": label,
                                          "stopped": None if report is None else report.to_dict()})
            written.append(str(save_npz(traj, path)))
        return written
