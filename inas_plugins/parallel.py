"""Parallel candidates: the iNAS candidates of a search trained at the same time, one Ray task each.

The search (:func:`inas_plugins.search.inas_search`) builds every candidate in this process exactly
as the sequential search does -- initial weights seeded from ``(seed, arch)``, inherited weights
copied, the training run seeded from ``(trainer seed, seed, arch)`` -- and hands
:meth:`CandidatePool.train` the candidates it would train next. Each task rebuilds the same training
run (same recipe, same seed) around a copy of the candidate's untrained network, trains it for the
same epochs, scores it on V' and sends the weights and the score back. The search then chooses
exactly as the sequential one: on the CPU the weights are bitwise the same as long as every
training uses the same number of torch threads, so each task trains with the run's ``--threads``
(the number of threads changes float summation order, and so the last bits of the weights). Same
weights, same choices, same labelled sets.

Only the plain search: successive halving pauses a candidate's training between rungs and resumes
it later, and its optimizer state would have to travel back and forth.

Resources: each task asks Ray for the run's threads as CPUs; on CUDA for a GPU of its own when
the run sees several GPUs, a third of the only one otherwise (three candidates at most per
iteration). Ray is started on first use, local and sized to this process's CPUs and GPUs, or the
Ray already initialised in this process is used (tests, notebooks).
"""

from __future__ import annotations

import copy
import time
from typing import Any, Sequence

import torch
from torch import nn

from .ray_cluster import connect, local_cpus
from .settings import check_positive_int
from .training.sources import DataSource
from .training.trainer import Trainer, TrainingRun

MAX_CANDIDATES = 3  # A, widen(A), deepen(A)


class CandidatePool:
    """Trains a search's candidates as parallel Ray tasks; see the module docstring."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = check_positive_int("", "threads", threads)
        self._data: tuple[int, Any] | None = None  # (id of the source, its object ref)

    def _task_resources(self, on_cuda: bool) -> dict[str, float]:
        import ray

        total = ray.cluster_resources()
        cpus = float(min(self.threads, max(1.0, total.get("CPU", 1.0))))
        if not on_cuda:
            return {"num_cpus": cpus}
        gpus = total.get("GPU", 0.0)
        if gpus < 1:
            raise RuntimeError("parallel candidates on CUDA need the GPUs in the Ray cluster, which has none")
        return {"num_cpus": cpus, "num_gpus": 1.0 if gpus >= 2 else 1.0 / MAX_CANDIDATES}

    def train(self, contenders: Sequence[Any], epochs: int, trainer: Trainer, train_data: DataSource,
              validation: DataSource) -> int:
        """Train every contender not yet trained to ``epochs`` and score it on ``validation``.

        ``contenders`` are the search's (each with ``model``, ``run``, ``scores`` and ``seconds``);
        afterwards each holds the trained weights, its training run counts the epochs and its score
        is cached, as if ``score_at(epochs, ...)`` had run here. Returns how many were trained.
        """
        todo = [c for c in contenders if c.run.epochs_done < epochs]
        if not todo:
            return 0
        for contender in todo:
            if contender.run.epochs_done > 0:
                raise ValueError("parallel candidates support the plain search only (a candidate would continue "
                                 "a paused training run); switch off successive halving")
        import ray

        on_cuda = trainer.device.type == "cuda"
        connect(None, num_cpus=max(local_cpus(), self.threads),
                num_gpus=torch.cuda.device_count() if on_cuda else 0)
        data = self._put(train_data, validation)
        remote = ray.remote(_train_candidate).options(**self._task_resources(on_cuda))
        worker_trainer = copy.copy(trainer)
        worker_trainer.progress = False
        futures = [remote.remote(worker_trainer, _cpu_copy(c.model), data, c.run.recipe, c.run.seed, epochs,
                                 self.threads, c.run.desc) for c in todo]
        for contender, result in zip(todo, ray.get(futures)):
            contender.model.load_state_dict(result["state"])
            run: TrainingRun = contender.run
            run.epochs_done, run.seconds, run.samples, run.last_loss = (
                epochs, result["train_seconds"], result["samples"], result["last_loss"])
            contender.scores[epochs] = result["score"]
            contender.seconds += result["seconds"]
        return len(todo)

    def _put(self, train_data: DataSource, validation: DataSource) -> Any:
        """S' and V' in Ray's object store, once per search (every candidate trains on the same)."""
        import ray

        key = (id(train_data), id(validation))
        if self._data is None or self._data[0] != key:
            cpu = torch.device("cpu")
            self._data = (key, ray.put((train_data.to(cpu), validation.to(cpu))))
        return self._data[1]


def _cpu_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).to("cpu")


def _train_candidate(trainer: Trainer, model: nn.Module, data: tuple[DataSource, DataSource], recipe,
                     seed: int, epochs: int, threads: int, desc: str) -> dict[str, Any]:
    """One Ray task: the candidate's training run rebuilt from its seed, trained, scored on V'."""
    began = time.perf_counter()
    torch.set_num_threads(threads)
    if trainer.device.type == "cuda":  # Ray shows the task only its own GPU(s)
        trainer.device = torch.device("cuda", torch.cuda.current_device())
    train_data, validation = data
    run = TrainingRun(trainer, model, train_data, recipe, desc=desc, seed=seed)
    stats = run.train_until(epochs)
    score = trainer.evaluate(run.model, validation)
    return {"state": {k: v.detach().cpu() for k, v in run.model.state_dict().items()}, "score": score,
            "train_seconds": stats.seconds, "samples": stats.samples, "last_loss": stats.final_loss,
            "seconds": time.perf_counter() - began}
