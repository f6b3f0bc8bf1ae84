"""The SGD engine that every active round spends its time in.

Batches come from a data source (:mod:`.sources`): in-memory uint8 tensors on the training device,
gathered by index and normalised in one fused op (the command line: no DataLoader and no PIL, so the
loop costs little more than the network itself, see ``benchmarks/trainer_throughput.py``), or a
user's ``Dataset`` streamed through a ``DataLoader`` every epoch (``INASModelWrapper``). Both are
read in the same sample order, and the trainer's own batched augmentation (one ``grid_sample``
call) applies to either when switched on. Evaluation goes through :mod:`inas_plugins.inference`.

Devices (:mod:`inas_plugins.device`): ``"auto"`` picks CUDA when available, else CPU; asking for CUDA
without it is an error, never a silent fallback. The device is named in a log line, in
``Trainer.describe()`` and in every progress bar. On CUDA the forward pass runs under autocast
(bfloat16 where supported, else float16 with a gradient scaler) with channels_last tensors.

The recipe (:mod:`.recipe`) decides the optimiser (SGD, optionally Nesterov, weight decay optionally
kept off norms and biases), the learning-rate schedule (torch's ``MultiStepLR``, ``LinearLR`` or
``CosineAnnealingLR``, after an optional ``LinearLR`` warmup, chained by ``SequentialLR``), label
smoothing, batch mixing (torchvision's ``MixUp``/``CutMix``, soft targets), an exponential weight
average (``AveragedModel``: at the end of a run its weights replace the network's, so what is
evaluated, queried, saved and inherited is the average) and flip test-time augmentation in
:meth:`Trainer.evaluate`.

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
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from ..device import DEVICE_CHOICES, amp_dtype, autocast, memory_format, resolve_device
from ..inference import iterate_outputs, run_model
from .augment import BatchAugment, batch_mixing
from .recipe import TrainRecipe, batch_bounds
from .sources import DataSource, InputFormat, TensorSource, check_labels

# Called after each training step with (logits, labels, loss), all detached.
BatchHook = Callable[[Tensor, Tensor, Tensor], None]

__all__ = ["BatchHook", "DEVICE_CHOICES", "Trainer", "TrainingRun", "TrainStats", "derive_seed", "resolve_device"]

logger = logging.getLogger(__name__)

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
    """Trains, predicts with and evaluates networks on a data source. Built once per active round.

    ``mean``/``std`` (per channel, 0..1 scale) are the format of uint8 tensors handed to ``fit`` and
    friends directly; a :class:`~.sources.DataSource` brings its own format. ``augment`` switches the
    trainer's batched augmentation (the recipe's shifts, rotations and cutout) as a whole, but not
    the recipe's batch mixing (MixUp, CutMix), which per-image transforms cannot do; ``flips=False``
    says mirrored images change their meaning (digits, house numbers): training never mirrors and
    evaluation ignores the recipe's ``test_flips``, as it does when the trainer does not augment (a
    network that never saw a mirrored image is not tested on one).
    """

    def __init__(
        self,
        recipe: TrainRecipe,
        *,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        augment: bool = True,
        flips: bool = True,
        device: str | torch.device = "auto",
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        if not isinstance(recipe, TrainRecipe):
            raise ValueError(f"recipe must be a TrainRecipe, got {type(recipe).__name__}")
        if (mean is None) != (std is None):
            raise ValueError("give mean and std together (one value per channel), or neither")
        self.fmt = InputFormat.uint8(mean, std) if mean is not None else None
        self.recipe = recipe
        self.device = resolve_device(device)
        self.seed = int(seed)
        self.progress = progress
        self.augment = bool(augment)
        self.flips = bool(flips)
        self.on_cuda = self.device.type == "cuda"
        self.amp_dtype = amp_dtype(self.device)
        if self.on_cuda:
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
        self.memory_format = memory_format(self.device)
        self._runs_started = 0
        logger.info("Trainer runs on %s", self.describe())

    def describe(self) -> str:
        """The device and numeric mode, e.g. ``cpu (float32, 2 threads)``."""
        if self.on_cuda:
            name = torch.cuda.get_device_name(self.device)
            return f"{self.device} ({name}, {str(self.amp_dtype).removeprefix('torch.')} autocast, channels_last)"
        return f"cpu (float32, {torch.get_num_threads()} threads)"

    # -- data ------------------------------------------------------------------------------------

    def source(self, data: DataSource | Tensor, labels: Optional[Tensor] = None) -> DataSource:
        """``data`` as a data source: sources pass through; tensors get the trainer's input format."""
        if isinstance(data, DataSource):
            if labels is not None:
                raise ValueError("a data source carries its own labels; pass labels only with image tensors")
            return data
        if isinstance(data, Tensor) and data.dtype == torch.uint8 and self.fmt is None:
            raise ValueError("uint8 images need the trainer's mean and std: Trainer(recipe, mean=..., std=...)")
        return TensorSource(data, labels, self.fmt if isinstance(data, Tensor) and data.dtype == torch.uint8 else None)

    def preprocess(self, images: Tensor) -> Tensor:
        """A batch of images -> normalised float32 network input on ``self.device`` (channels_last on CUDA)."""
        return self.source(images).fmt.prepare(images, self.device).contiguous(memory_format=self.memory_format)

    def augmentation(self, recipe: TrainRecipe, images: Tensor) -> Optional[BatchAugment]:
        """The recipe's augmentation in pixels of these images, or None when the trainer does not augment."""
        if not self.augment:
            return None
        augment = BatchAugment.for_images(recipe, images.shape[-2], images.shape[-1], flips=self.flips)
        return None if augment.is_identity else augment

    # -- training --------------------------------------------------------------------------------

    def start(
        self,
        model: nn.Module,
        data: DataSource | Tensor,
        labels: Optional[Tensor] = None,
        *,
        recipe: TrainRecipe | None = None,
        desc: str = "train",
        run_seed: int | None = None,
        on_batch: Optional[BatchHook] = None,
    ) -> "TrainingRun":
        """Set up a run that can be advanced epoch by epoch (successive halving pauses runs).

        ``on_batch(logits, labels, loss)`` (detached) is called after every step: baal's wrapper
        feeds its running train metrics from it, as ``ModelWrapper`` does, without another pass.
        """
        source = self.source(data, labels)
        if len(source) == 0:
            raise ValueError("cannot train on an empty labelled set")
        if isinstance(source, TensorSource):
            if source.labels is None:
                raise ValueError("training needs labels: TensorSource(images, labels, ...)")
            check_labels(source.labels, getattr(model, "num_classes", None))
        index = self._runs_started
        self._runs_started += 1
        seed = derive_seed(self.seed, index) if run_seed is None else derive_seed(run_seed)
        return TrainingRun(self, model, source, recipe or self.recipe, desc=desc, seed=seed, on_batch=on_batch)

    def fit(
        self,
        model: nn.Module,
        data: DataSource | Tensor,
        labels: Optional[Tensor] = None,
        *,
        recipe: TrainRecipe | None = None,
        desc: str = "train",
        run_seed: int | None = None,
    ) -> TrainStats:
        """Train ``model`` in place on ``data`` (a source, or images with ``labels``) for the whole recipe."""
        return self.start(model, data, labels, recipe=recipe, desc=desc, run_seed=run_seed).finish()

    # -- inference -------------------------------------------------------------------------------

    def _outputs(self, model: nn.Module, source: DataSource, wants: set[str]) -> dict[str, Tensor]:
        if len(source) == 0:
            raise ValueError("no images to run the model on")
        model.to(device=self.device, memory_format=self.memory_format)
        return run_model(model, source.evaluation().batches(self.device, batch_size=self.recipe.eval_batch_size), wants)

    def predict_logits(self, model: nn.Module, data: DataSource | Tensor) -> Tensor:
        """Logits (N, num_classes), float32 on CPU, in eval mode without gradients, in batches."""
        return self._outputs(model, self.source(data), {"logits"})["logits"]

    def embed(self, model: nn.Module, data: DataSource | Tensor) -> Tensor:
        """Penultimate embeddings (N, D) of a timm-style model, float32 on CPU."""
        return self._outputs(model, self.source(data), {"embeddings"})["embeddings"].cpu()

    def evaluate(self, model: nn.Module, data: DataSource | Tensor, labels: Optional[Tensor] = None) -> float:
        """Top-1 accuracy in [0, 1] on a labelled source (or images with ``labels``); with the recipe's
        ``test_flips`` (when the network trained on mirrored images: augmentation on, flips valid), of the
        summed logits of each image and its mirror."""
        if isinstance(data, Tensor) and labels is not None and labels.shape[0] != data.shape[0]:
            raise ValueError(f"{data.shape[0]} images but {labels.shape[0]} labels")
        source = self.source(data, labels).evaluation()
        if len(source) == 0:
            raise ValueError("no images to run the model on")
        model.to(device=self.device, memory_format=self.memory_format)
        correct = total = 0
        batches = source.batches(self.device, batch_size=self.recipe.eval_batch_size)
        mirrored = self.recipe.test_flips and self.flips and self.augment  # only a network trained on mirrors
        if mirrored:  # each image and its mirror in one batch; their logits are summed
            batches = ((torch.cat([x, x.flip(-1)]), y) for x, y in batches)
        for outputs, target in iterate_outputs(model, batches, {"logits"}):
            if target is None:
                raise ValueError("evaluation needs labelled data")
            logits = outputs["logits"]
            if mirrored:
                logits = logits[: target.shape[0]] + logits[target.shape[0]:]
            correct += int((logits.argmax(dim=1) == target).sum())
            total += int(target.shape[0])
        return correct / total


class TrainingRun:
    """One SGD run of a model under a recipe, advanced with ``train_until(epoch)``.

    Holds the optimizer, its learning-rate scheduler (stepped once per optimizer step), the weight
    average, the run's generator and its global RNG state between calls, so training E epochs in
    pieces gives the same weights as training them in one go. The recipe is the caller's, with the
    epoch size fitted to the labelled set (:meth:`TrainRecipe.for_labels`).
    """

    def __init__(self, trainer: Trainer, model: nn.Module, source: DataSource, recipe: TrainRecipe,
                 *, desc: str, seed: int, on_batch: Optional[BatchHook] = None) -> None:
        self.trainer = trainer
        self.recipe = recipe = recipe.for_labels(len(source))
        self.desc = desc
        self.on_batch = on_batch
        self.seed = seed
        device = trainer.device
        self.model = model.to(device=device, memory_format=trainer.memory_format)
        self.source = source.to(device)
        self.optimizer = torch.optim.SGD(parameter_groups(self.model, recipe), lr=recipe.lr, momentum=recipe.momentum,
                                         nesterov=recipe.nesterov)
        self.scheduler = lr_scheduler(self.optimizer, recipe)
        self.averaged = None
        if recipe.ema_decay is not None:
            self.averaged = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema_decay),
                                          use_buffers=True)
        self.scaler = torch.amp.GradScaler("cuda") if trainer.amp_dtype == torch.float16 else None
        self.generator = torch.Generator(device=device).manual_seed(derive_seed(seed, 0))
        # The global RNG (dropout, ...) gets its own stream for this run, swapped in while training.
        self._global_state = self._fresh_global_state(derive_seed(seed, 1))
        self._bounds = batch_bounds(recipe.epoch_size, recipe.batch_size)
        self._augment_size: tuple[int, ...] | None = None
        self._augmentation: Optional[BatchAugment] = None
        # The recipe's, even where the trainer does not augment images (a baal dataset's own transforms
        # augment each image; none of them can blend a batch).
        self._mixing = batch_mixing(recipe, self.model)
        self.epochs_done = 0
        self.step = 0
        self.seconds = 0.0
        self.samples = 0
        self.last_loss = math.nan
        self._last_lr = recipe.lr

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

    @property
    def evaluation_model(self) -> nn.Module:
        """The network to evaluate now: the weight average while one runs, else the network itself
        (which holds the average once the run is finished)."""
        if self.averaged is not None and not self.finished:
            return self.averaged.module
        return self.model

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
        if self.finished and self.averaged is not None:
            # The average is the run's result: evaluated, queried, saved and inherited from here on.
            self.model.load_state_dict(self.averaged.module.state_dict())
            self.averaged = None
        return self.stats()

    def _epoch_order(self) -> Tensor:
        """``epoch_size`` sample indices: whole random permutations of the labelled set, repeated as
        often as needed (oversampling) and cut at ``epoch_size``, so every sample is seen
        floor or ceil(epoch_size / n) times."""
        n, size = len(self.source), self.recipe.epoch_size
        repeats = -(-size // n)
        keys = torch.rand(repeats, n, device=self.trainer.device, generator=self.generator)
        return keys.argsort(dim=1).flatten()[:size]

    def _train_epoch(self) -> Tensor:
        trainer, model, optimizer, scaler, recipe = self.trainer, self.model, self.optimizer, self.scaler, self.recipe
        generator, averaged = self.generator, self.averaged
        order = self._epoch_order()
        batches = self.source.batches(trainer.device, order=(order[start:stop] for start, stop in self._bounds))
        loss_sum = torch.zeros((), device=trainer.device)
        for x, y in batches:
            if y is None:
                raise ValueError("training needs labelled data; the dataset yields no labels")
            augment = self._augment(x)
            if augment is not None:
                x = augment(x, generator)
            target = y
            if self._mixing is not None:
                x, target = self._mixing(x, y)
            if trainer.on_cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(trainer.device):
                logits = model(x)
                loss = F.cross_entropy(logits, target, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            if averaged is not None:
                averaged.update_parameters(model)
            loss_sum += loss.detach().float() * y.shape[0]
            if self.on_batch is not None:
                self.on_batch(logits.detach().float(), y, loss.detach().float())
            self._last_lr = self.scheduler.get_last_lr()[0]
            self.scheduler.step()
            self.step += 1
        return loss_sum

    def _augment(self, images: Tensor) -> Optional[BatchAugment]:
        """The run's augmentation for this batch's image size (built on the first batch)."""
        size = tuple(images.shape[-2:])
        if self._augment_size != size:
            self._augment_size, self._augmentation = size, self.trainer.augmentation(self.recipe, images)
        return self._augmentation

    @property
    def current_lr(self) -> float:
        """The learning rate of the most recent optimizer step (the initial rate before any)."""
        return self._last_lr


def parameter_groups(model: nn.Module, recipe: TrainRecipe) -> list[dict]:
    """SGD parameter groups: weight decay on every parameter (the paper), or with
    ``decay_norms_and_biases=False`` only on conv and linear weights -- norm scales and biases
    (every parameter of fewer than two dimensions) are left undecayed."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    if recipe.decay_norms_and_biases:
        return [{"params": parameters, "weight_decay": recipe.weight_decay}]
    return [{"params": [p for p in parameters if p.ndim > 1], "weight_decay": recipe.weight_decay},
            {"params": [p for p in parameters if p.ndim <= 1], "weight_decay": 0.0}]


def lr_scheduler(optimizer: torch.optim.Optimizer, recipe: TrainRecipe) -> torch.optim.lr_scheduler.LRScheduler:
    """The recipe's schedule over ``recipe.total_steps`` optimizer steps, from torch's schedulers:
    an optional linear warmup (``LinearLR`` from 1/(w+1) of the rate), then the paper's steps
    (``MultiStepLR``), a linear decay to zero (``LinearLR``) or a cosine one (``CosineAnnealingLR``)."""
    schedulers = torch.optim.lr_scheduler
    warmup, total = recipe.warmup_steps, recipe.total_steps
    remaining = total - warmup
    if recipe.lr_schedule == "step":
        main = schedulers.MultiStepLR(optimizer, milestones=[max(0, m - warmup) for m in recipe.milestone_steps()],
                                      gamma=recipe.lr_gamma)
    elif recipe.lr_schedule == "linear":
        main = schedulers.LinearLR(optimizer, start_factor=1.0, end_factor=0.0, total_iters=remaining)
    else:
        main = schedulers.CosineAnnealingLR(optimizer, T_max=remaining, eta_min=0.0)
    if warmup == 0:
        return main
    ramp = schedulers.LinearLR(optimizer, start_factor=1.0 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    return schedulers.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
