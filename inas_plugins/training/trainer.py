"""The SGD engine that every active round spends its time in.

Data stays a uint8 tensor on the training device; each step gathers a batch by index, converts it
to normalised floats, augments it with one ``grid_sample`` call and takes an SGD step. There is no
DataLoader and no PIL, so the loop costs little more than the network itself (see
``benchmarks/trainer_throughput.py``).

Devices: ``"auto"`` picks CUDA when available, else CPU; asking for CUDA without it is an error,
never a silent fallback. The device is named in a log line, in ``Trainer.describe()`` and in every
progress bar. On CUDA the forward pass runs under autocast (bfloat16 where supported, else float16
with a gradient scaler) with channels_last tensors; on CPU everything is float32.

Reproducibility: the k-th run started by a trainer (``fit`` or ``start``, counting from 0) draws all
its randomness -- sample order, augmentation and the global RNG that dropout uses -- from a seed
derived from ``(trainer seed, k)``, or from ``run_seed`` when the caller passes one. The caller's
global RNG state is saved and restored around training, so a run neither disturbs nor depends on
it. On CPU the same seed and call order give bitwise-identical weights.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .augment import BatchAugment
from .recipe import TrainRecipe, batch_bounds

logger = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available else CPU. Asking for an unavailable CUDA device is a ValueError."""
    if isinstance(device, torch.device):
        resolved = device
    elif not isinstance(device, str):
        raise ValueError(f"device must be a string or torch.device, got {device!r}; choose one of {DEVICE_CHOICES}")
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            resolved = torch.device(device)
        except RuntimeError:
            raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICE_CHOICES)}") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type != "cuda":
        raise ValueError(f"unsupported device {str(resolved)!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {str(resolved)!r} was requested but CUDA is not available; use 'cpu' or 'auto'")
    if resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(resolved)!r} does not exist; this machine has {torch.cuda.device_count()} CUDA device(s)")
    return resolved


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers, so runs seeded (s, 0), (s, 1), ... are independent."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFFFFFFFFFF for p in parts]).generate_state(1, np.uint64)[0] >> 1)


@dataclass
class TrainStats:
    """What one training run cost and where it ended."""

    seconds: float
    samples: int
    samples_per_second: float
    final_loss: float
    epochs: int

    def to_dict(self) -> dict:
        return asdict(self)


class Trainer:
    """Trains, predicts with and evaluates networks on uint8 image tensors. Built once per dataset.

    ``augment`` switches augmentation as a whole; ``flips=False`` keeps shifts and rotations but never
    mirrors (digits, house numbers). ``mean``/``std`` are per-channel, on the 0..1 pixel scale.

    Other input formats: a subclass overrides ``_check_images`` (what ``fit``/``predict`` accept) and
    ``_normalise`` (a raw batch -> normalised float32 on ``self.device``); the training loop and the
    inference helpers go through those two hooks only.
    """

    def __init__(
        self,
        recipe: TrainRecipe,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        augment: bool = True,
        flips: bool = True,
        max_shift: int = 4,
        max_rotation: float = 15.0,
        device: str | torch.device = "auto",
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        if not isinstance(recipe, TrainRecipe):
            raise ValueError(f"recipe must be a TrainRecipe, got {type(recipe).__name__}")
        if len(mean) != len(std) or len(mean) == 0:
            raise ValueError(f"mean and std need one value per channel, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std values must be positive, got {list(std)}")
        self.recipe = recipe
        self.device = resolve_device(device)
        self.seed = int(seed)
        self.progress = progress
        self.augment = BatchAugment(flips=flips, max_shift=max_shift, max_rotation=max_rotation) if augment else None
        self.channels = len(mean)
        self.on_cuda = self.device.type == "cuda"
        self.amp_dtype: torch.dtype | None = None
        if self.on_cuda:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
        self.memory_format = torch.channels_last if self.on_cuda else torch.contiguous_format
        std_t = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        # x_normalised = x_uint8 * scale + offset, in one addcmul.
        self._scale = 1.0 / (255.0 * std_t)
        self._offset = -mean_t / std_t
        self._runs_started = 0
        logger.info("Trainer runs on %s", self.describe())

    def describe(self) -> str:
        """The device and numeric mode, e.g. ``cpu (float32, 2 threads)``."""
        if self.on_cuda:
            name = torch.cuda.get_device_name(self.device)
            return f"{self.device} ({name}, {str(self.amp_dtype).removeprefix('torch.')} autocast, channels_last)"
        return f"cpu (float32, {torch.get_num_threads()} threads)"

    # -- data ------------------------------------------------------------------------------------

    def _check_images(self, images: Tensor) -> None:
        if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            got = f"{images.dtype} tensor of shape {tuple(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must be a uint8 tensor (N, C, H, W), got {got}")
        if images.shape[1] != self.channels:
            raise ValueError(f"images have {images.shape[1]} channels but mean/std describe {self.channels}")

    def _normalise(self, batch_uint8: Tensor) -> Tensor:
        # Move as uint8 (a quarter of the bytes); then one fused pass converts and normalises
        # (addcmul promotes the uint8 input to float32): fewer kernels, fewer passes over memory.
        return torch.addcmul(self._offset, batch_uint8.to(device=self.device, non_blocking=True), self._scale)

    def preprocess(self, images_uint8: Tensor) -> Tensor:
        """uint8 (N, C, H, W) on any device -> normalised float32 on ``self.device`` (channels_last on CUDA)."""
        self._check_images(images_uint8)
        return self._normalise(images_uint8).contiguous(memory_format=self.memory_format)

    def _autocast(self):
        return torch.autocast("cuda", dtype=self.amp_dtype) if self.on_cuda else torch.autocast("cpu", enabled=False)

    # -- training --------------------------------------------------------------------------------

    def start(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        *,
        recipe: TrainRecipe | None = None,
        desc: str = "train",
        run_seed: int | None = None,
    ) -> "TrainingRun":
        """Set up a run that can be advanced epoch by epoch (successive halving pauses runs)."""
        self._check_images(images)
        if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels must be a 1-d tensor with one label per image ({images.shape[0]})")
        if images.shape[0] == 0:
            raise ValueError("cannot train on an empty labelled set")
        if labels.min() < 0:
            raise ValueError("labels must be class indices >= 0")
        index = self._runs_started
        self._runs_started += 1
        seed = derive_seed(self.seed, index) if run_seed is None else derive_seed(run_seed)
        return TrainingRun(self, model, images, labels, recipe or self.recipe, desc=desc, seed=seed)

    def fit(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        *,
        recipe: TrainRecipe | None = None,
        desc: str = "train",
        run_seed: int | None = None,
    ) -> TrainStats:
        """Train ``model`` in place on uint8 ``images`` and int64 ``labels`` for the whole recipe."""
        return self.start(model, images, labels, recipe=recipe, desc=desc, run_seed=run_seed).finish()

    # -- inference -------------------------------------------------------------------------------

    def _map_batches(self, model: nn.Module, images: Tensor, fn: Callable[[nn.Module, Tensor], Tensor]) -> Tensor:
        self._check_images(images)
        was_training = model.training
        model.to(device=self.device, memory_format=self.memory_format)
        model.eval()
        outputs = []
        try:
            with torch.no_grad(), self._autocast():
                for start in range(0, images.shape[0], self.recipe.eval_batch_size):
                    batch = self.preprocess(images[start:start + self.recipe.eval_batch_size])
                    outputs.append(fn(model, batch).float())
        finally:
            model.train(was_training)
        if not outputs:
            raise ValueError("no images to run the model on")
        return torch.cat(outputs).cpu()

    def predict_logits(self, model: nn.Module, images: Tensor) -> Tensor:
        """Logits (N, num_classes), float32 on CPU, in eval mode without gradients, in batches."""
        return self._map_batches(model, images, lambda m, x: m(x))

    def embed(self, model: nn.Module, images: Tensor) -> Tensor:
        """Penultimate embeddings (N, model.num_features) via ``model.embed``, float32 on CPU."""
        if not hasattr(model, "embed"):
            raise ValueError(f"{type(model).__name__} has no embed() method; use an INASResNet")
        return self._map_batches(model, images, lambda m, x: m.embed(x))

    def evaluate(self, model: nn.Module, images: Tensor, labels: Tensor) -> float:
        """Top-1 accuracy in [0, 1]."""
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        predictions = self.predict_logits(model, images).argmax(dim=1)
        return (predictions == labels.cpu()).sum().item() / labels.shape[0]


class TrainingRun:
    """One SGD run of a model under a recipe, advanced with ``train_until(epoch)``.

    Holds the optimizer, the run's generator and its global RNG state between calls, so training
    E epochs in pieces gives the same weights as training them in one go.
    """

    def __init__(self, trainer: Trainer, model: nn.Module, images: Tensor, labels: Tensor,
                 recipe: TrainRecipe, *, desc: str, seed: int) -> None:
        self.trainer = trainer
        self.recipe = recipe
        self.desc = desc
        self.seed = seed
        device = trainer.device
        self.model = model.to(device=device, memory_format=trainer.memory_format)
        self.images = images.to(device).contiguous()
        self.labels = labels.to(device=device, dtype=torch.int64)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                         weight_decay=recipe.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda") if trainer.amp_dtype == torch.float16 else None
        self.generator = torch.Generator(device=device).manual_seed(derive_seed(seed, 0))
        # The global RNG (dropout, ...) gets its own stream for this run, swapped in while training.
        self._global_state = self._fresh_global_state(derive_seed(seed, 1))
        self._bounds = batch_bounds(recipe.epoch_size, recipe.batch_size)
        self._milestones = recipe.milestone_steps()
        self.epochs_done = 0
        self.step = 0
        self.seconds = 0.0
        self.samples = 0
        self.last_loss = math.nan

    def _fresh_global_state(self, seed: int) -> dict:
        """Global RNG states as ``torch.manual_seed(seed)`` would leave them, without touching them."""
        state = {"cpu": torch.Generator().manual_seed(seed).get_state()}
        if self.trainer.on_cuda:
            state["cuda"] = torch.Generator(device=self.trainer.device).manual_seed(seed).get_state()
        return state

    def _capture_global(self) -> dict:
        state = {"cpu": torch.get_rng_state()}
        if self.trainer.on_cuda:
            state["cuda"] = torch.cuda.get_rng_state(self.trainer.device)
        return state

    def _restore_global(self, state: dict) -> None:
        torch.set_rng_state(state["cpu"])
        if "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], self.trainer.device)

    @property
    def finished(self) -> bool:
        return self.epochs_done >= self.recipe.epochs

    def stats(self) -> TrainStats:
        return TrainStats(seconds=self.seconds, samples=self.samples,
                          samples_per_second=self.samples / self.seconds if self.seconds > 0 else 0.0,
                          final_loss=self.last_loss, epochs=self.epochs_done)

    def finish(self) -> TrainStats:
        return self.train_until(self.recipe.epochs)

    def train_until(self, epoch: int) -> TrainStats:
        """Train up to (not beyond) ``epoch`` completed epochs; returns the run's cumulative stats."""
        if not 0 <= epoch <= self.recipe.epochs:
            raise ValueError(f"epoch must be in 0..{self.recipe.epochs} for this recipe, got {epoch}")
        if epoch <= self.epochs_done:
            return self.stats()
        caller_state = self._capture_global()
        self._restore_global(self._global_state)
        trainer = self.trainer
        bar = tqdm(total=epoch - self.epochs_done, desc=f"{self.desc} on {trainer.device}", unit="epoch",
                   disable=not trainer.progress, leave=False, dynamic_ncols=True)
        self.model.train()
        try:
            while self.epochs_done < epoch:
                began = time.perf_counter()
                loss_sum = self._train_epoch()
                self.last_loss = loss_sum.item() / self.recipe.epoch_size  # one device sync per epoch
                took = time.perf_counter() - began
                self.seconds += took
                self.samples += self.recipe.epoch_size
                self.epochs_done += 1
                bar.set_postfix(loss=f"{self.last_loss:.4f}", samples_per_s=f"{self.recipe.epoch_size / took:,.0f}")
                bar.update(1)
        finally:
            bar.close()
            self._global_state = self._capture_global()
            self._restore_global(caller_state)
        return self.stats()

    def _epoch_order(self) -> Tensor:
        """``epoch_size`` sample indices: whole random permutations of the labelled set, repeated as
        often as needed (oversampling) and cut at ``epoch_size``, so every sample is seen
        floor or ceil(epoch_size / n) times."""
        n, size = self.images.shape[0], self.recipe.epoch_size
        repeats = -(-size // n)
        keys = torch.rand(repeats, n, device=self.trainer.device, generator=self.generator)
        return keys.argsort(dim=1).flatten()[:size]

    def _train_epoch(self) -> Tensor:
        trainer, model, optimizer, scaler = self.trainer, self.model, self.optimizer, self.scaler
        augment, generator = trainer.augment, self.generator
        order = self._epoch_order()
        loss_sum = torch.zeros((), device=trainer.device)
        for start, stop in self._bounds:
            index = order[start:stop]
            x = trainer._normalise(self.images[index])
            if augment is not None:
                x = augment(x, generator)
            if trainer.on_cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            y = self.labels[index]
            self._set_lr()
            with trainer._autocast():
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            loss_sum += loss.detach().float() * (stop - start)
            self.step += 1
        return loss_sum

    def _set_lr(self) -> None:
        """Apply the step schedule; touches the optimizer only on the steps where the rate changes."""
        if self.step == 0 or self.step in self._milestones:
            lr = self.recipe.lr_at(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    @property
    def current_lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]
