"""Per-round checkpoints of an active-iNAS run, so ``inas run --resume DIR`` continues where it stopped.

A checkpoint is the state *between* rounds: the labelled map after the last query, the round records
so far, the current architecture and its trained weights (the parent for weight inheritance). Every
round reseeds from (seed, round), so a resumed run replays exactly what an uninterrupted one does.
Checkpoints hold only tensors and plain Python values and load with ``weights_only=True``; loading
checks every key's type (and each round record), so an empty, foreign, damaged or hand-edited file
is one line naming the file and the problem, never a traceback.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from .atomic import atomic_write_bytes
from .records import RoundRecord
from .run_files import CHECKPOINT_NAME

FORMAT_VERSION = 1
_KEYS = ("next_round", "labelled_map", "arch", "rounds", "model_state")


@dataclass
class Checkpoint:
    next_round: int
    labelled_map: np.ndarray  # baal's map: 0 = unlabelled, r > 0 = labelled at step r
    arch: list[int]
    rounds: list[dict[str, Any]]
    model_state: Optional[dict[str, torch.Tensor]]
    finished: bool = False

    def to_payload(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "next_round": self.next_round,
            "labelled_map": torch.from_numpy(np.asarray(self.labelled_map, dtype=np.int64)),
            "arch": list(self.arch),
            "rounds": self.rounds,
            "model_state": self.model_state,
            "finished": self.finished,
        }

    @classmethod
    def from_payload(cls, payload: Any) -> "Checkpoint":
        """A checkpoint from what ``torch.load`` returned; one-line ValueError naming what is wrong."""
        if not isinstance(payload, dict):
            raise ValueError(f"expected a dict of run state, got {type(payload).__name__}")
        if payload.get("format") != FORMAT_VERSION:
            raise ValueError(f"checkpoint format {payload.get('format')!r} is not supported (expected {FORMAT_VERSION})")
        missing = [key for key in _KEYS if key not in payload]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        next_round, labelled_map = payload["next_round"], payload["labelled_map"]
        arch, rounds, model_state = payload["arch"], payload["rounds"], payload["model_state"]
        finished = payload.get("finished", False)
        if isinstance(next_round, bool) or not isinstance(next_round, int) or next_round < 0:
            raise ValueError(f"next_round must be a non-negative integer, got {next_round!r}")
        if (not isinstance(labelled_map, torch.Tensor) or labelled_map.dim() != 1
                or labelled_map.dtype.is_floating_point or labelled_map.dtype == torch.bool):
            raise ValueError("labelled_map must be a 1-d integer tensor")
        if not isinstance(arch, list) or len(arch) != 2 or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in arch):
            raise ValueError(f"arch must be [blocks, stacks] of positive integers, got {arch!r}")
        if not isinstance(rounds, list) or not all(isinstance(row, dict) for row in rounds):
            raise ValueError("rounds must be a list of round records")
        if len(rounds) != next_round:
            raise ValueError(f"it records {len(rounds)} rounds but says the next round is {next_round}")
        if model_state is not None and (not isinstance(model_state, dict) or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model_state.items())):
            raise ValueError("model_state must map parameter names to tensors")
        if not isinstance(finished, bool):
            raise ValueError(f"finished must be true or false, got {finished!r}")
        if next_round > 0 and model_state is None:
            raise ValueError("a checkpoint after a finished round must hold the model weights")
        for index, row in enumerate(rounds):
            try:
                RoundRecord.from_dict(row)
            except ValueError as error:
                raise ValueError(f"round {index} {error}") from None
        return cls(next_round=next_round, labelled_map=labelled_map.numpy().astype(np.int64), arch=list(arch),
                   rounds=list(rounds), model_state=model_state, finished=finished)


def save_checkpoint(run_dir: Path, checkpoint: Checkpoint) -> Path:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    path = Path(run_dir) / CHECKPOINT_NAME
    buffer = io.BytesIO()
    torch.save(checkpoint.to_payload(), buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_checkpoint(run_dir: Path) -> Checkpoint:
    """The run's checkpoint, checked; ValueError (one line, naming the file) if it is missing or bad."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise ValueError(f"{run_dir} holds no run checkpoint ({CHECKPOINT_NAME} is missing)")
    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {path} is empty (not written by `inas run`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file; torch's message is several lines of advice
        # torch's own message is several lines of advice about weights_only, beside the point here
        raise ValueError(f"checkpoint {path} is not readable as an `inas run` checkpoint (damaged, or not a "
                         f"file torch.save wrote: {type(error).__name__})") from None
    try:
        return Checkpoint.from_payload(payload)
    except ValueError as error:
        raise ValueError(f"checkpoint {path} is malformed: {error}") from None

