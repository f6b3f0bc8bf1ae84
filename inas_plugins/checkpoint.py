"""Per-round checkpoints of an active-iNAS run, so ``inas run --resume DIR`` continues where it stopped.

A checkpoint is the state *between* rounds: the labelled map after the last query, the round records
so far, the current architecture and its trained weights (the parent for weight inheritance). Every
round reseeds from (seed, round), so a resumed run replays exactly what an uninterrupted one does.
Checkpoints hold only tensors and plain Python values and load with ``weights_only=True``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from .atomic import atomic_write_bytes

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1


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
    def from_payload(cls, payload: dict[str, Any]) -> "Checkpoint":
        if payload.get("format") != FORMAT_VERSION:
            raise ValueError(f"checkpoint format {payload.get('format')!r} is not supported (expected {FORMAT_VERSION})")
        return cls(
            next_round=int(payload["next_round"]),
            labelled_map=payload["labelled_map"].numpy(),
            arch=list(payload["arch"]),
            rounds=list(payload["rounds"]),
            model_state=payload["model_state"],
            finished=bool(payload.get("finished", False)),
        )


def save_checkpoint(run_dir: Path, checkpoint: Checkpoint) -> Path:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    path = Path(run_dir) / CHECKPOINT_NAME
    buffer = io.BytesIO()
    torch.save(checkpoint.to_payload(), buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_checkpoint(run_dir: Path) -> Checkpoint:
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise ValueError(f"{run_dir} holds no run checkpoint ({CHECKPOINT_NAME} is missing)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file
        raise ValueError(f"cannot read checkpoint {path}: {error}") from error
    return Checkpoint.from_payload(payload)
