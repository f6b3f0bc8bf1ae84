"""What a heuristic needs from the model, computed once per query and only as far as needed.

baal hands every heuristic the same thing (an ``[n, classes, iterations]`` prediction array), which
fits uncertainty scores but not coreset, which works on embeddings. Here each heuristic declares
``needs`` (a subset of :data:`NEEDS`) and :func:`collect_outputs` runs the network only for that:

* ``"probs"``: softmax of the deterministic pass (dropout off), ``(N_pool, C)``;
* ``"mc_probs"``: softmax with the head dropout on, ``K`` samples, ``(N_pool, C, K)`` (baal's layout);
* ``"embeddings"``: pooled features before the dropout for the pool and the labelled set.

Because the only dropout of an :class:`~inas_plugins.models.INASResNet` sits just before the
classifier, MC-dropout does not need ``K`` full forward passes: the trunk runs once per batch and
only the head (dropout mask + ``classify``) is sampled ``K`` times. That is exactly the distribution
baal's ``MCDropoutModule`` samples from, at a small fraction of the cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

NEEDS: frozenset[str] = frozenset({"probs", "mc_probs", "embeddings"})

# MC head samples are evaluated as one (K * rows, D) batch; rows are chosen so that batch stays
# below this many elements (64 MiB of float32), whatever K and the embedding width are.
_MC_ELEMENTS_PER_CALL = 1 << 24


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
    pool_images: Tensor,
    labelled_images: Tensor,
    needs: set[str] | frozenset[str],
    *,
    preprocess: Callable[[Tensor], Tensor],
    batch_size: int = 512,
    mc_samples: int = 100,
    mc_dropout_rate: float | None = 0.5,
    seed: int = 0,
    progress: bool = False,
) -> ModelOutputs:
    """Run ``model`` over the pool (and the labelled set) and return only the outputs in ``needs``.

    Args:
        model: an ``INASResNet``: anything with ``embed`` and a ``classify`` that applies dropout
            first (``head.drop``, read only when ``mc_dropout_rate`` is None).
        pool_images, labelled_images: uint8 ``(N, C, H, W)`` tensors.
        needs: subset of :data:`NEEDS`; the union of what the chosen heuristic declares.
        preprocess: uint8 batch -> normalised float batch on the model's device (the Trainer's).
        batch_size: images per forward pass of the trunk.
        mc_samples: ``K``, dropout samples of the classifier head per image (paper: 100).
        mc_dropout_rate: dropout rate used for the MC samples (paper: 0.5, dropout on only at
            inference); ``None`` keeps the model's own ``head.drop.p``.
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
    if mc_samples < 1:
        raise ValueError(f"mc_samples must be at least 1, got {mc_samples}")
    if mc_dropout_rate is not None and not 0.0 <= mc_dropout_rate < 1.0:
        raise ValueError(f"mc_dropout_rate must be in [0, 1) or None, got {mc_dropout_rate}")
    outputs = ModelOutputs(n_pool=int(pool_images.shape[0]))
    if not needs:
        return outputs

    rate = _dropout_rate(model, mc_dropout_rate) if "mc_probs" in needs else 0.0
    was_training = model.training
    device = _device_of(model)
    # Dropout masks come from their own generator: a query is reproducible and the global RNG untouched.
    masks = _MaskSampler(seed, device)
    model.eval()
    try:
        # no_grad, not inference_mode: callers may still modify the returned tensors in place.
        with torch.no_grad():
            pool = _pass_over(model, pool_images, needs, preprocess, batch_size, mc_samples, rate, masks,
                              progress, "query: pool")
            outputs.probs = pool.get("probs")
            outputs.mc_probs = pool.get("mc_probs")
            if "embeddings" in needs:
                outputs.pool_embeddings = pool["embeddings"]
                labelled = _pass_over(model, labelled_images, frozenset({"embeddings"}), preprocess, batch_size,
                                      mc_samples, rate, masks, progress, "query: labelled")
                outputs.labelled_embeddings = labelled.get("embeddings")
                if outputs.labelled_embeddings is None:
                    outputs.labelled_embeddings = pool["embeddings"].new_empty((0, pool["embeddings"].shape[1]))
    finally:
        model.train(was_training)
    return outputs


def _dropout_rate(model: nn.Module, mc_dropout_rate: float | None) -> float:
    if mc_dropout_rate is not None:
        return mc_dropout_rate
    rate = getattr(getattr(getattr(model, "head", None), "drop", None), "p", None)
    if rate is None:
        raise ValueError("mc_dropout_rate=None uses the model's head.drop.p, but the model has no head.drop")
    return float(rate)


def _pass_over(model, images: Tensor, needs: frozenset[str], preprocess, batch_size: int, mc_samples: int,
               rate: float, masks: _MaskSampler, progress: bool, label: str) -> dict[str, object]:
    """One pass of the trunk over ``images``; heads evaluated as ``needs`` asks."""
    probs, mc_probs, embeddings = [], [], []
    starts = range(0, int(images.shape[0]), batch_size)
    for start in tqdm(starts, desc=label, unit="batch", disable=not progress, leave=False):
        embedding = model.embed(preprocess(images[start:start + batch_size])).float()
        if "embeddings" in needs:
            embeddings.append(embedding)
        if "probs" in needs:
            probs.append(torch.softmax(model.classify(embedding).float(), dim=1).cpu())
        if "mc_probs" in needs:
            mc_probs.append(_sample_head(model, embedding, mc_samples, rate, masks).cpu())
    result: dict[str, object] = {}
    if probs:
        result["probs"] = torch.cat(probs).numpy()
    if mc_probs:
        result["mc_probs"] = torch.cat(mc_probs).numpy()
    if embeddings:
        result["embeddings"] = torch.cat(embeddings).contiguous()
    return result


def _sample_head(model, embedding: Tensor, mc_samples: int, rate: float, masks: _MaskSampler) -> Tensor:
    """``(B, C, K)`` softmax of ``classify`` under K independent dropout masks.

    ``classify`` is dropout followed by the classifier; the model is in eval mode, so its dropout is
    the identity and the masks are applied here to its input instead: each element is kept with
    probability ``1 - rate`` and scaled by ``1 / (1 - rate)``, as ``nn.Dropout`` does in training.
    """
    rows, width = embedding.shape
    rows_per_call = max(1, _MC_ELEMENTS_PER_CALL // max(1, mc_samples * width))
    chunks = []
    for start in range(0, rows, rows_per_call):
        part = embedding[start:start + rows_per_call]
        dropped = masks.uniform((mc_samples, *part.shape), part.device)
        dropped.ge_(rate).mul_(1.0 / (1.0 - rate)).mul_(part)
        logits = model.classify(dropped.reshape(-1, width)).float().reshape(mc_samples, part.shape[0], -1)
        chunks.append(torch.softmax(logits, dim=2).permute(1, 2, 0))
    return torch.cat(chunks).contiguous()


class _MaskSampler:
    """Uniform [0, 1) float32 draws for the dropout masks, from a generator of their own.

    The masks are what the head's cost is made of (K x B x D draws). On CPU numpy's PCG64 draws
    them about twice as fast as ``torch.rand``; on an accelerator ``torch.rand`` runs on the device.
    """

    def __init__(self, seed: int, device: torch.device) -> None:
        self.numpy = np.random.default_rng(seed)
        self.torch = torch.Generator(device=device).manual_seed(seed) if device.type != "cpu" else None

    def uniform(self, shape: tuple[int, ...], device: torch.device) -> Tensor:
        if self.torch is None:
            return torch.from_numpy(self.numpy.random(shape, dtype=np.float32))
        return torch.rand(shape, generator=self.torch, device=device)


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")

