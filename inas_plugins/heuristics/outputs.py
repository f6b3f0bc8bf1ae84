"""What a heuristic needs from the model, computed once per query and only as far as needed.

baal hands every heuristic the same thing (an ``[n, classes, iterations]`` prediction array), which
fits uncertainty scores but not coreset, which works on embeddings. Here each heuristic declares
``needs`` (a subset of :data:`NEEDS`) and :func:`collect_outputs` runs the network only for that:

* ``"probs"``: softmax of the deterministic pass (dropout off), ``(N_pool, C)``;
* ``"mc_probs"``: softmax of K MC-dropout samples, ``(N_pool, C, K)`` (baal's layout);
* ``"embeddings"``: pooled features before the dropout for the pool and the labelled set.

The network is run by :mod:`inas_plugins.inference`, the one inference path of the toolkit: the
trunk runs once per batch and only the classifier head is sampled K times (what MC-dropout means
here is written there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from tqdm.auto import tqdm

from ..inference import DEFAULT_MC_DROPOUT_RATE, DEFAULT_MC_SAMPLES, iterate_outputs, run_model
from ..device import device_of
from ..training.sources import DataSource

NEEDS: frozenset[str] = frozenset({"probs", "mc_probs", "embeddings"})

# Which inference output each need is computed from.
_OUTPUT_OF_NEED = {"probs": "logits", "mc_probs": "mc_logits", "embeddings": "embeddings"}


@dataclass
class ModelOutputs:
    """The model's view of the pool (and labelled set) that a query heuristic ranks.

    Fields a heuristic did not declare in ``needs`` stay ``None``. ``n_pool`` records the pool size
    so heuristics that need nothing from the model (random) still know how many points there are.
    """

    probs: np.ndarray | None = None
    mc_probs: np.ndarray | None = None
    pool_embeddings: Tensor | None = None
    labelled_embeddings: Tensor | None = None
    n_pool: int | None = None

    @property
    def pool_size(self) -> int:
        """Number of pool points, from ``n_pool`` or from whichever output is present."""
        if self.n_pool is not None:
            return self.n_pool
        for value in (self.probs, self.mc_probs, self.pool_embeddings):
            if value is not None:
                return int(value.shape[0])
        raise ValueError("ModelOutputs holds no pool outputs and no n_pool; cannot tell the pool size")


def check_needs(needs: set[str] | frozenset[str]) -> frozenset[str]:
    """Return ``needs`` as a frozenset, or raise ValueError naming the unknown entries."""
    needs = frozenset(needs)
    unknown = needs - NEEDS
    if unknown:
        raise ValueError(f"unknown model output(s) {sorted(unknown)}; valid needs are {sorted(NEEDS)}")
    return needs


def collect_outputs(
    model: nn.Module,
    pool: DataSource,
    labelled: DataSource | None,
    needs: set[str] | frozenset[str],
    *,
    batch_size: int = 512,
    mc_samples: int = DEFAULT_MC_SAMPLES,
    mc_dropout_rate: float = DEFAULT_MC_DROPOUT_RATE,
    seed: int = 0,
    progress: bool = False,
) -> ModelOutputs:
    """Run ``model`` over the pool (and the labelled set) and return only the outputs in ``needs``.

    Args:
        model: a network with timm's interface (an ``INASResNet``, a timm model) on its device.
        pool, labelled: data sources (``TensorSource`` / ``LoaderSource``); read without random
            augmentation. ``labelled`` is only read for embeddings and may be None otherwise.
        needs: subset of :data:`NEEDS`; the union of what the chosen heuristic declares.
        batch_size: images per forward pass of the trunk.
        mc_samples, mc_dropout_rate: K and the rate of MC-dropout (the paper: 100 and 0.5).
        seed: seeds the dropout masks (their own generator), so a query is reproducible; the global
            RNG is left untouched.
        progress: show a progress bar.

    BatchNorm stays in eval mode throughout; the model's train/eval state is restored afterwards.
    Embeddings stay on the model's device (coreset then runs there); probabilities are float32
    numpy arrays.
    """
    needs = check_needs(needs)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    outputs = ModelOutputs(n_pool=len(pool))
    if not needs:
        return outputs
    device = device_of(model)
    wants = {_OUTPUT_OF_NEED[need] for need in needs}
    batches = pool.evaluation().batches(device, batch_size=batch_size)
    result = run_model(model, batches, wants, mc_samples=mc_samples, mc_dropout_rate=mc_dropout_rate, seed=seed,
                       progress=progress, desc="query: pool", total=-(-len(pool) // batch_size))
    if "probs" in needs:
        outputs.probs = _softmax(result.get("logits"), len(pool))
    if "mc_probs" in needs:
        outputs.mc_probs = _softmax(result.get("mc_logits"), len(pool))
    if "embeddings" in needs:
        outputs.pool_embeddings = result.get("embeddings")
        if labelled is None:
            raise ValueError("embeddings need the labelled set too: pass collect_outputs(..., labelled=...)")
        if len(labelled):
            labelled_batches = labelled.evaluation().batches(device, batch_size=batch_size)
            outputs.labelled_embeddings = run_model(model, labelled_batches, {"embeddings"}, progress=progress,
                                                    desc="query: labelled")["embeddings"]
        width = outputs.pool_embeddings.shape[1] if outputs.pool_embeddings is not None else 0
        if outputs.labelled_embeddings is None:
            outputs.labelled_embeddings = torch.empty((0, width), device=device)
        if outputs.pool_embeddings is None:
            outputs.pool_embeddings = torch.empty((0, outputs.labelled_embeddings.shape[1]), device=device)
    return outputs


# Outputs a pointwise score can be computed from, batch by batch.
CHUNKABLE_NEEDS = frozenset({"probs", "mc_probs"})


def scores_in_chunks(heuristic: object) -> bool:
    """True when ``heuristic`` scores each pool point from that point's probabilities alone and picks
    by those scores (a pointwise ``ScoreHeuristic`` that keeps its ``select``), so :func:`pool_scores`
    may run it batch by batch instead of :func:`collect_outputs` building every output of the pool first."""
    needs = frozenset(getattr(heuristic, "needs", ()))
    return (bool(needs) and needs <= CHUNKABLE_NEEDS and getattr(heuristic, "pointwise", False) is True
            and getattr(heuristic, "picks_by_scores", False) is True)


def pool_scores(
    model: nn.Module,
    pool: DataSource,
    heuristic: object,
    *,
    batch_size: int = 512,
    mc_samples: int = DEFAULT_MC_SAMPLES,
    mc_dropout_rate: float = DEFAULT_MC_DROPOUT_RATE,
    seed: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """The heuristic's score of every pool point, computed one batch at a time.

    The same network passes, dropout masks (same seed, same batches) and softmax as
    :func:`collect_outputs`, so the scores equal ``heuristic.scores(collect_outputs(...))``; but
    only one batch's ``(B, C, K)`` MC probabilities exist at a time, instead of the pool's
    ``(N, C, K)`` (CIFAR-100 at K = 100: 1.9 GB, more while concatenating). For heuristics where
    :func:`scores_in_chunks` holds.
    """
    needs = check_needs(heuristic.needs)  # type: ignore[attr-defined]
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if len(pool) == 0:
        return np.zeros(0, dtype=np.float64)
    device = device_of(model)
    wants = {_OUTPUT_OF_NEED[need] for need in needs}
    batches = pool.evaluation().batches(device, batch_size=batch_size)
    parts = []
    bar = tqdm(total=-(-len(pool) // batch_size), desc="query: pool", unit="batch", disable=not progress, leave=False)
    try:
        for result, _ in iterate_outputs(model, batches, wants, mc_samples=mc_samples, mc_dropout_rate=mc_dropout_rate,
                                         seed=seed):
            rows = next(iter(result.values())).shape[0]
            chunk = ModelOutputs(n_pool=rows)
            if "probs" in needs:
                chunk.probs = _softmax(result["logits"].cpu(), rows)
            if "mc_probs" in needs:
                chunk.mc_probs = _softmax(result["mc_logits"].cpu(), rows)
            scores = np.asarray(heuristic.scores(chunk), dtype=np.float64)  # type: ignore[attr-defined]
            if scores.shape != (rows,):
                raise ValueError(f"heuristic {getattr(heuristic, 'name', heuristic)!r} returned scores of shape "
                                 f"{scores.shape} for a batch of {rows} points")
            parts.append(scores)
            bar.update(1)
    finally:
        bar.close()
    return np.concatenate(parts)


def _softmax(logits: Tensor | None, n: int) -> np.ndarray:
    """Probabilities over the class axis (1) as float32 numpy; an empty pool gives an empty array."""
    if logits is None:
        return np.zeros((n, 0), dtype=np.float32)
    return torch.softmax(logits.float(), dim=1).numpy()
