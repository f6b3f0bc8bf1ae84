"""Batched inference, in one place: logits, head-only MC-dropout samples and embeddings.

The command line's loop, the query heuristics, the trainer's evaluation and ``INASModelWrapper``
all call :func:`run_model`, so MC-dropout has one meaning everywhere:

    K samples of the classifier applied to the penultimate features under K independent dropout
    masks at ``mc_dropout_rate`` (the paper: K = 100, rate 0.5, dropout only at inference),
    whatever dropout rate (often none) the network was trained with.

A network that follows timm's interface (``forward_features``, ``forward_head(x, pre_logits=True)``,
``get_classifier()``), as :class:`~inas_plugins.models.INASResNet` and timm's own models do, runs its
trunk once per batch and only the classifier is sampled K times, which costs about 1.1-1.5x one
pass instead of K passes (BENCHMARKS.md). Any other network gets K full passes with its own dropout
layers switched on, and one without dropout layers is refused: its K samples would be identical.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .device import autocast, device_of, memory_format
from .settings import DEFAULT_MC_DROPOUT_RATE, DEFAULT_MC_SAMPLES, check_positive_int

#: What :func:`run_model` can compute per item.
OUTPUTS = frozenset({"logits", "mc_logits", "embeddings"})

# MC head samples are evaluated as one (K * rows, D) batch; rows are chosen so that batch stays
# below this many elements (64 MiB of float32), whatever K and the embedding width are.
_MC_ELEMENTS_PER_CALL = 1 << 24


def follows_timm_interface(model: nn.Module) -> bool:
    """True when the model exposes features, pre-logits and its classifier the way timm models do."""
    return all(callable(getattr(model, name, None)) for name in ("forward_features", "forward_head", "get_classifier"))


def penultimate(model: nn.Module, x: Tensor) -> Tensor:
    """Pooled features right before the classifier, ``(B, D)``, for a timm-style model in eval mode."""
    return model.forward_head(model.forward_features(x), pre_logits=True)


class MaskSampler:
    """Uniform [0, 1) float32 draws for dropout masks, from a generator of their own.

    A seeded query is reproducible and the global RNG is untouched. The masks are what the head's
    cost is made of (K x B x D draws); on CPU numpy's PCG64 draws them about twice as fast as
    ``torch.rand``; on an accelerator ``torch.rand`` runs on the device.
    """

    def __init__(self, seed: int, device: torch.device) -> None:
        self.numpy = np.random.default_rng(seed)
        self.torch = torch.Generator(device=device).manual_seed(seed) if device.type != "cpu" else None
        self.seed = seed

    def uniform(self, shape: tuple[int, ...], device: torch.device) -> Tensor:
        if self.torch is None:
            return torch.from_numpy(self.numpy.random(shape, dtype=np.float32))
        return torch.rand(shape, generator=self.torch, device=device)


def sample_head(classifier: nn.Module, features: Tensor, samples: int, rate: float, masks: MaskSampler) -> Tensor:
    """``(B, C, K)`` logits of ``classifier`` on ``features`` under K independent dropout masks.

    Each element is kept with probability ``1 - rate`` and scaled by ``1 / (1 - rate)``, as
    ``nn.Dropout`` does in training, which is the distribution baal's ``MCDropoutModule`` samples.
    """
    rows, width = features.shape
    rows_per_call = max(1, _MC_ELEMENTS_PER_CALL // max(1, samples * width))
    chunks = []
    for start in range(0, rows, rows_per_call):
        part = features[start:start + rows_per_call].float()
        dropped = masks.uniform((samples, *part.shape), part.device)
        dropped.ge_(rate).mul_(1.0 / (1.0 - rate)).mul_(part)
        logits = classifier(dropped.reshape(-1, width)).float().reshape(samples, part.shape[0], -1)
        chunks.append(logits.permute(1, 2, 0))
    return torch.cat(chunks).contiguous()


@contextmanager
def dropout_enabled(model: nn.Module) -> Iterator[int]:
    """Switch every dropout layer of an eval-mode ``model`` on, yield how many there are, restore after."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    states = [m.training for m in layers]
    for layer in layers:
        layer.train()
    try:
        yield sum(1 for layer in layers if layer.p > 0)
    finally:
        for layer, state in zip(layers, states):
            layer.train(state)


def batch_outputs(model: nn.Module, x: Tensor, wants: frozenset[str], *, mc_samples: int, mc_dropout_rate: float,
                  masks: MaskSampler) -> dict[str, Tensor]:
    """The outputs in ``wants`` for one batch of network input ``x``; the model is in eval mode.

    ``logits`` ``(B, C)`` without dropout; ``mc_logits`` ``(B, C, K)``; ``embeddings`` ``(B, D)``.
    """
    result: dict[str, Tensor] = {}
    if follows_timm_interface(model):
        features = penultimate(model, x)
        if "embeddings" in wants:
            result["embeddings"] = features.float()
        classifier = model.get_classifier()
        if "logits" in wants:
            result["logits"] = classifier(features).float()
        if "mc_logits" in wants:
            result["mc_logits"] = sample_head(classifier, features, mc_samples, mc_dropout_rate, masks)
        return result
    if "embeddings" in wants:
        raise ValueError(f"{type(model).__name__} has no forward_head(x, pre_logits=True): embeddings (coreset and "
                         "other embedding heuristics) need a network with timm's interface, such as an INASResNet")
    if "logits" in wants:
        result["logits"] = model(x).float()
    if "mc_logits" in wants:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []), dropout_enabled(model) as n:
            if n == 0 and mc_samples > 1:
                raise ValueError(f"{type(model).__name__} has no dropout layer, so its {mc_samples} MC-dropout samples "
                                 "would all be identical; give it timm's forward_head/get_classifier (dropout is then "
                                 "applied to its features at mc_dropout_rate) or a dropout layer")
            torch.manual_seed(masks.seed)
            result["mc_logits"] = torch.stack([model(x).float() for _ in range(mc_samples)], dim=-1)
    return result


def iterate_outputs(model: nn.Module, batches: Iterable[tuple[Tensor, Any]], wants: Iterable[str], *,
                    mc_samples: int = DEFAULT_MC_SAMPLES, mc_dropout_rate: float = DEFAULT_MC_DROPOUT_RATE,
                    seed: int = 0) -> Iterator[tuple[dict[str, Tensor], Any]]:
    """For each ``(network input, labels)`` batch (what a data source yields; labels may be None),
    yield ``(batch_outputs(...), labels)``, in eval mode without gradients.

    The model's train/eval state is restored afterwards; BatchNorm is never updated.
    """
    wants = frozenset(wants)
    unknown = wants - OUTPUTS
    if unknown:
        raise ValueError(f"unknown model output(s) {sorted(unknown)}; valid outputs are {sorted(OUTPUTS)}")
    if "mc_logits" in wants:
        check_mc(mc_samples, mc_dropout_rate)
    device = device_of(model)
    masks = MaskSampler(seed, device)
    was_training = model.training
    model.eval()
    try:
        for x, labels in batches:
            x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format(device))
            # Grad mode and autocast are thread-wide switches: enter and leave them around each batch,
            # never across a yield, or the caller's code would run without gradients. no_grad, not
            # inference_mode: callers may still modify the returned tensors in place.
            with torch.no_grad(), autocast(device):
                outputs = batch_outputs(model, x, wants, mc_samples=mc_samples, mc_dropout_rate=mc_dropout_rate,
                                        masks=masks)
            yield outputs, labels
    finally:
        model.train(was_training)


def run_model(model: nn.Module, batches: Iterable[tuple[Tensor, Any]], wants: Iterable[str], *,
              mc_samples: int = DEFAULT_MC_SAMPLES, mc_dropout_rate: float = DEFAULT_MC_DROPOUT_RATE, seed: int = 0,
              progress: bool = False, desc: str = "predict", total: int | None = None) -> dict[str, Tensor]:
    """:func:`iterate_outputs` over all batches, concatenated: logits on the CPU, embeddings on the
    model's device (coreset then runs there). A key is absent when there were no batches."""
    wants = frozenset(wants)
    parts: dict[str, list[Tensor]] = {name: [] for name in wants}
    bar = tqdm(total=total, desc=desc, unit="batch", disable=not progress, leave=False)
    try:
        for outputs, _ in iterate_outputs(model, batches, wants, mc_samples=mc_samples, mc_dropout_rate=mc_dropout_rate,
                                       seed=seed):
            for name, value in outputs.items():
                parts[name].append(value if name == "embeddings" else value.cpu())
            bar.update(1)
    finally:
        bar.close()
    return {name: torch.cat(values) for name, values in parts.items() if values}


def check_mc(mc_samples: int, mc_dropout_rate: float) -> None:
    """One-line ValueError for an impossible MC-dropout setting."""
    check_positive_int("", "mc_samples", mc_samples)
    if not 0.0 <= mc_dropout_rate < 1.0:
        raise ValueError(f"mc_dropout_rate must be in [0, 1), got {mc_dropout_rate}")
    if mc_samples > 1 and mc_dropout_rate == 0.0:
        raise ValueError(f"mc_dropout_rate 0 would make the {mc_samples} MC-dropout samples identical; use a rate "
                         f"in (0, 1) (the paper: {DEFAULT_MC_DROPOUT_RATE}) or one sample")
