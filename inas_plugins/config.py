"""Run configuration for active-iNAS: the run's own fields plus three settings sections, named presets.

A :class:`RunConfig` holds what only a run has (dataset, search space, labelling protocol, data
limits, seeds) and composes the settings every other part of the toolkit uses under the same names:
``train`` (:class:`~inas_plugins.training.TrainRecipe`), ``search``
(:class:`~inas_plugins.settings.SearchOptions`) and ``query``
(:class:`~inas_plugins.settings.QueryOptions`). Each setting is range-checked once, by the
dataclass that owns it; :meth:`RunConfig.validate` checks only the run's own fields.

A configuration is resolved as defaults <- preset <- explicit overrides, printed, and saved with the
results (``config.json``, nested: the run's fields at the top, then ``"train"``, ``"search"`` and
``"query"``), so every run can be reproduced from it, and read back with :meth:`RunConfig.from_dict`.

Errors name settings by field (``initial``) or path (``query.mc_samples``), as
:class:`~inas_plugins.settings.SettingError`; the command line's flags map onto the same settings
through one table, :data:`RUN_FLAGS`, which also turns those names into flags for its messages.

Importing this module imports nothing heavy (no torch): ``space``, ``settings`` and
``training.recipe`` are plain dataclasses.
"""

from __future__ import annotations

import os
import types
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple, Optional, Union, get_args, get_origin, get_type_hints

from .settings import PREMATURE_SCHEDULES, QueryOptions, SearchOptions, SettingError, check_fraction, check_positive_int
from .space import Arch, SearchSpace
from .training.recipe import LR_SCHEDULES, RECIPES, SHIFT_MODES, TrainRecipe, recipe_settings

# The settings sections of a run: key in the nested layout -> the dataclass that owns its fields.
SECTIONS: dict[str, type] = {"train": TrainRecipe, "search": SearchOptions, "query": QueryOptions}

@dataclass
class RunConfig:
    """Everything that defines one active-learning run (paper Algorithm 2 plus its training recipe)."""

    dataset: str = "digits"
    data_dir: Optional[str] = None
    arch: Optional[str] = None  # a fixed architecture such as "2x4"; None runs the iNAS search
    start_arch: str = "1x1"
    max_blocks: int = 12
    max_stacks: int = 5
    block: str = "basic"
    # Labelling protocol: k random labels, then batches from the schedule until the budget.
    initial: int = 2000
    query_schedule: list[list[int]] = field(default_factory=lambda: [[0, 2000], [10_000, 5000]])
    budget: int = 50_000
    # The network (the SGD recipe is ``train``).
    augment: Optional[bool] = None  # None: the dataset's own default
    base_width: int = 64
    drop_rate: float = 0.0  # dropout while training; MC-dropout applies its own rate at inference
    # Data size limits (the cpu preset shrinks CIFAR) and run control.
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None
    image_size: Optional[int] = None  # folders of photos: shorter side resized to this, then centre-cropped square
    seed: int = 0
    data_seed: int = 0  # fixed across run seeds, so every seed sees the same train/test split
    device: str = "auto"
    preset: Optional[str] = None
    # The named training recipe the ``train`` section was resolved from (``RECIPES``); the section
    # holds every value, this only says where they came from (and makes --recipe a setting).
    recipe: str = "paper"
    # What the run was trained on (see :data:`DATA_IDENTITY_KEYS`), filled in once the data is loaded,
    # so a resume on other data, or a report that averages runs on different data, can be refused.
    data_identity: Optional[dict] = None
    # The settings sections (paper section 5.1 recipe, Algorithm 1, the query functions).
    train: TrainRecipe = field(default_factory=TrainRecipe)
    search: SearchOptions = field(default_factory=SearchOptions)
    query: QueryOptions = field(default_factory=QueryOptions)

    # --- derived values -------------------------------------------------------------------
    @property
    def space(self) -> SearchSpace:
        return SearchSpace(self.max_blocks, self.max_stacks, self.block)

    @property
    def fixed_arch(self) -> Optional[Arch]:
        return Arch.parse(self.arch) if self.arch else None

    @property
    def uses_search(self) -> bool:
        """True when iNAS searches the architecture, False for a fixed-architecture baseline."""
        return self.arch is None

    def batch_size_at(self, labelled: int) -> int:
        """Query batch for a labelled-set size: the last schedule step whose threshold is reached."""
        size = self.query_schedule[0][1]
        for threshold, batch in self.query_schedule:
            if labelled >= threshold:
                size = batch
        return size

    # --- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The nested layout: the run's own fields, then ``train``, ``search`` and ``query``."""
        data: dict[str, Any] = {name: getattr(self, name) for name in OWN_FIELDS}
        data["query_schedule"] = [list(step) for step in self.query_schedule]
        for name in SECTIONS:
            data[name] = getattr(self, name).to_dict()
        return data

    @classmethod
    def from_dict(cls, values: Any) -> "RunConfig":
        """A validated configuration from its nested layout (what :meth:`to_dict` writes).

        Anything that is not a mapping, an unknown key, a value of the wrong type or out of range
        raises a one-line ValueError naming the key (a :class:`SettingError` for a setting).
        """
        nested = _nest(values, "a run configuration")
        own = {name: value for name, value in nested.items() if name not in SECTIONS}
        sections = {name: _section(name, nested.get(name, {})) for name in SECTIONS}
        config = cls(**own, **sections).validate()
        config.query_schedule = [list(step) for step in config.query_schedule]  # never share the caller's lists
        return config

    def validate(self) -> "RunConfig":
        """Raise a one-line :class:`SettingError` naming the first bad field of the run's own fields.

        The sections check their own fields when they are built.
        """
        for name, cls in SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise SettingError(f"{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}", name)
        for name in OWN_FIELDS:
            _check_type(name, getattr(self, name), _OWN_HINTS[name])
        for name in ("max_blocks", "max_stacks", "initial", "budget", "base_width"):
            check_positive_int("", name, getattr(self, name))
        space = self.space  # validates the block type
        for name in ("start_arch", "arch"):
            text = getattr(self, name)
            if text is not None:
                try:
                    space.check(Arch.parse(text))
                except ValueError as error:
                    raise SettingError(f"{name} {text}: {error}", name) from None
        if self.uses_search and self.initial < MIN_INITIAL_FOR_SEARCH:
            raise SettingError(f"initial must be at least {MIN_INITIAL_FOR_SEARCH} with the iNAS search (it holds out "
                               f"part of the labelled points to score candidates), got {self.initial}; or fix the "
                               f"architecture with arch", "initial", "arch")
        if self.budget < self.initial:
            raise SettingError(f"budget ({self.budget}) is below initial ({self.initial}), the random labels a run "
                               f"starts with; raise budget or lower initial", "budget", "initial")
        for name in ("seed", "data_seed"):
            if not 0 <= getattr(self, name) <= MAX_SEED:
                raise SettingError(f"{name} must be in [0, {MAX_SEED}], got {getattr(self, name)}", name)
        if self.image_size is not None and not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE:
            raise SettingError(f"image_size must be in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}] pixels, got {self.image_size}",
                               "image_size")
        recipe_settings(self.recipe)  # one line listing the names for an unknown one
        if self.data_identity is not None:
            check_data_identity(self.data_identity)
        if not self.query_schedule or any(len(step) != 2 or step[1] < 1 or step[0] < 0 for step in self.query_schedule):
            raise SettingError(f"query_schedule needs steps FROM:BATCH with FROM >= 0 and BATCH >= 1, e.g. "
                               f"0:2000,10000:5000; got {self.query_schedule}", "query_schedule")
        check_fraction("", "drop_rate", self.drop_rate, low_open=False)
        for name in ("limit_train", "limit_test"):
            if getattr(self, name) is not None:
                check_positive_int("", name, getattr(self, name))
        return self


# numpy's legacy RandomState (baal's ActiveLearningDataset) takes seeds below 2**32.
MAX_SEED = 2**32 - 1
# The search holds out a validation share of the labelled set: it needs one point on each side.
MIN_INITIAL_FOR_SEARCH = 2
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 1024

# The dataset identity a run stores: key -> (check, what it must be). ``path`` is where the data was
# read from (allowed to change: a moved copy); the rest must match on resume and groups runs in reports.
DATA_IDENTITY_KEYS: dict[str, tuple[Any, str]] = {
    "kind": (lambda v: isinstance(v, str) and bool(v), "a dataset name"),
    "path": (lambda v: v is None or isinstance(v, str), "a path or null"),
    "train": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a count"),
    "test": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a count"),
    "image_size": (lambda v: isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v),
                   "[height, width]"),
    "channels": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a channel count"),
    "classes": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of class names"),
    "files": (lambda v: v is None or isinstance(v, str), "a fingerprint or null"),
    "fingerprint": (lambda v: isinstance(v, str) and bool(v), "a fingerprint"),
}
DATA_IDENTITY_MAY_CHANGE = ("path",)


def check_data_identity(identity: Any) -> dict:
    """One-line ValueError unless ``identity`` has exactly the keys of :data:`DATA_IDENTITY_KEYS`, well typed."""
    if not isinstance(identity, dict):
        raise ValueError(f"data_identity must be an object, got {_json_type(identity)}")
    if set(identity) != set(DATA_IDENTITY_KEYS):
        raise ValueError(f"data_identity must have the keys {sorted(DATA_IDENTITY_KEYS)}, got {sorted(identity)}")
    for key, (check, what) in DATA_IDENTITY_KEYS.items():
        if not check(identity[key]):
            raise ValueError(f"data_identity.{key} must be {what}, got {identity[key]!r}")
    return identity


def identity_differences(stored: dict, found: dict) -> list[str]:
    """``key: stored -> found`` for every identity key that may not change and did."""
    return [f"{key} {_short_value(stored.get(key))} -> {_short_value(found.get(key))}"
            for key in DATA_IDENTITY_KEYS if key not in DATA_IDENTITY_MAY_CHANGE and stored.get(key) != found.get(key)]


def _short_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


OWN_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RunConfig) if f.name not in SECTIONS)
_OWN_HINTS: dict[str, Any] = get_type_hints(RunConfig)
_SECTION_HINTS: dict[str, dict[str, Any]] = {name: get_type_hints(cls) for name, cls in SECTIONS.items()}


# --------------------------------------------------------------------------- parsing


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (dict, "an object"), ((list, tuple), "a list"), (str, "a string"),
                       ((int, float), "a number")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _nest(values: Any, what: str) -> dict[str, Any]:
    """One layer of settings in the nested layout: the run's fields at the top, sections as dicts.

    An unknown key or a section that is not a mapping is a one-line ValueError.
    """
    if not isinstance(values, dict):
        raise ValueError(f"{what} must be a mapping of settings, got {_json_type(values)}")
    unknown = sorted(str(key) for key in values if key not in OWN_FIELDS and key not in SECTIONS)
    if unknown:
        raise ValueError(f"unknown configuration keys {unknown}; valid keys are {[*OWN_FIELDS, *SECTIONS]}")
    for key in SECTIONS:
        if key in values and not isinstance(values[key], dict):
            raise SettingError(f"{key} must be a mapping of {key} settings, got {_json_type(values[key])}", key)
    return dict(values)


def _section(name: str, data: dict[str, Any]) -> Any:
    """Build section ``name`` from its dict: types checked here, ranges by the dataclass.

    A range error that does not say which setting it is about (a plain ValueError) is tied to its
    key by building the section from that key alone, so every error names its setting."""
    cls = SECTIONS[name]
    hints = _SECTION_HINTS[name]
    for key, value in data.items():
        if key in hints:
            _check_type(f"{name}.{key}", value, hints[key])
    try:
        return cls.from_dict(data)
    except SettingError:
        raise
    except ValueError as error:
        key = next((key for key in data if key in hints and not _builds(cls, {key: data[key]})), None)
        if key is None:
            raise
        raise SettingError(f"{name}.{key}: {error}", f"{name}.{key}") from None
    except TypeError as error:  # a type the check above does not know; still one line
        raise ValueError(f"{name} settings {data!r}: {error}") from None


def _builds(cls: type, data: dict[str, Any]) -> bool:
    try:
        cls.from_dict(data)
    except (ValueError, TypeError):
        return False
    return True


def _check_type(where: str, value: Any, hint: Any) -> None:
    if not _conforms(value, hint):
        raise SettingError(f"{where} must be {_describe(hint)}, got {value!r}", where)


def _conforms(value: Any, hint: Any) -> bool:
    origin = get_origin(hint)
    if hint is Any:
        return True
    if origin is Union or origin is types.UnionType:
        return any(_conforms(value, arm) for arm in get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        inner = [arg for arg in get_args(hint) if arg is not Ellipsis]
        return not inner or all(_conforms(item, inner[0]) for item in value)
    return True  # anything else is the owning dataclass's to check


def _describe(hint: Any) -> str:
    origin = get_origin(hint)
    if origin is Union or origin is types.UnionType:
        return " or ".join(_describe(arm) for arm in get_args(hint))
    if origin in (list, tuple):
        inner = [arg for arg in get_args(hint) if arg is not Ellipsis]
        return "a list" + (f" of {_plural(inner[0])}" if inner else "")
    return {type(None): "null", bool: "true or false", int: "an integer", float: "a number",
            str: "a string"}.get(hint, getattr(hint, "__name__", str(hint)))


def _plural(hint: Any) -> str:
    """``list[list[int]]`` -> "lists of lists of integers"."""
    if get_origin(hint) in (list, tuple):
        inner = [arg for arg in get_args(hint) if arg is not Ellipsis]
        return "lists" + (f" of {_plural(inner[0])}" if inner else "")
    return {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}.get(hint, "values")


def _merge(*layers: dict[str, Any]) -> dict[str, Any]:
    """Nested layers, later ones winning field by field inside the sections."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            merged[key] = {**merged.get(key, {}), **value} if key in SECTIONS else value
    return merged


# --------------------------------------------------------------------------- the command line


class Flag(NamedTuple):
    """One command-line option of a setting: ``--flag`` sets ``field`` of ``section`` (None: the run's
    own field). ``choices``: the values it takes, for a closed set (empty: any value of its type)."""

    flag: str
    section: Optional[str]
    field: str
    help: str
    choices: tuple[str, ...] = ()

    @property
    def param(self) -> str:
        """The option's Python parameter name, also its key in :func:`resolve_config` overrides."""
        return self.flag.replace("-", "_")

    @property
    def path(self) -> str:
        """The setting's path in a configuration: ``"initial"``, ``"query.mc_samples"``."""
        return self.field if self.section is None else f"{self.section}.{self.field}"

    @property
    def value_type(self) -> type:
        """The type of the setting's values (int, float, str or bool), from its dataclass field."""
        hint = (_OWN_HINTS if self.section is None else _SECTION_HINTS[self.section])[self.field]
        arms = [arm for arm in get_args(hint) if arm is not type(None)] if get_origin(hint) in (Union, types.UnionType) \
            else [hint]
        return arms[0]


# The value of --arch that means the iNAS search (no fixed architecture), as `inas sweep` grids use it.
SEARCHED_ARCH = "inas"
# Devices the command line offers; the library also takes "cuda:N" (CUDA_VISIBLE_DEVICES does that here).
DEVICES = ("auto", "cpu", "cuda")

# The one table from command-line flags to settings; one row per setting option, so adding a setting
# to the command line is adding a row. ``inas run`` and ``inas label init`` declare their setting
# options from it (type, choices and help text included), build their overrides from it, turn the
# setting names in the library's errors into flags with it, and :func:`resolve_config` routes flat
# override keys through it. --preset, --query-size, --schedule, --out, --resume and --quiet are not settings.
RUN_FLAGS: tuple[Flag, ...] = (
    Flag("dataset", None, "dataset", "cifar10, cifar100, svhn, folder, digits (default, bundled) or synthetic."),
    Flag("data-dir", None, "data_dir", "Existing dataset copy; for 'folder', the directory with train/ and test/."),
    Flag("heuristic", "query", "heuristic", "Query heuristic (see `inas heuristics`); default softmax_response."),
    Flag("arch", None, "arch", "Fixed architecture BLOCKSxSTACKS (e.g. 2x4) instead of the iNAS search; "
         "inas (the default): the search."),
    Flag("initial", None, "initial", "Random labels before the first round (paper: 2000)."),
    Flag("budget", None, "budget", "Stop when this many points are labelled (paper: 50000)."),
    Flag("recipe", None, "recipe", "Training recipe: paper (the paper's; the paper preset's) or lowdata (tuned for "
         "200-3,200 labels; the cpu preset's). The flags below change single fields of it.", tuple(RECIPES)),
    Flag("epochs", "train", "epochs", "Epochs of full training per round (paper: 200)."),
    Flag("epoch-size", "train", "epoch_size", "Samples per epoch, by oversampling (paper: 50000)."),
    Flag("epoch-size-exponent", "train", "epoch_size_exponent",
         "Grow the epoch with the labelled set n: epoch-size x (n / 1000) ^ this (0: fixed, the paper's)."),
    Flag("batch-size", "train", "batch_size", "SGD batch size (paper: 128)."),
    Flag("lr", "train", "lr", "Peak learning rate (paper: 0.1)."),
    Flag("lr-schedule", "train", "lr_schedule", "step (the paper's: x0.1 at 50% and 75%), linear or cosine (to zero).",
         LR_SCHEDULES),
    Flag("warmup", "train", "warmup", "Linear warmup, as a fraction of each training run (paper: 0)."),
    Flag("nesterov", "train", "nesterov", "Nesterov momentum (paper: off)."),
    Flag("weight-decay", "train", "weight_decay", "SGD weight decay (paper: 5e-4)."),
    Flag("decay-norms-and-biases", "train", "decay_norms_and_biases",
         "Weight decay also on norm layers and biases (paper: on)."),
    Flag("label-smoothing", "train", "label_smoothing", "Label smoothing of the cross-entropy, in [0, 1) (paper: 0)."),
    Flag("ema-decay", "train", "ema_decay",
         "Keep an exponential average of the weights with this per-step decay, in (0, 1), and use it (paper: off)."),
    Flag("shift", "train", "shift", "Largest random shift, as a fraction of the image side (0.125: 4 px of 32)."),
    Flag("shift-mode", "train", "shift_mode", "warp (the paper's: bilinear, zeros shifted in) or reflect (whole "
         "pixels over a reflected border).", SHIFT_MODES),
    Flag("rotation", "train", "rotation", "Largest random rotation in degrees (paper: 15; 0: none)."),
    Flag("cutout", "train", "cutout", "Side of a random zeroed square, as a fraction of the image side (paper: 0)."),
    Flag("mixup", "train", "mixup", "MixUp's Beta alpha: blend each batch with itself shuffled, labels too (0: off)."),
    Flag("cutmix", "train", "cutmix", "CutMix's Beta alpha: paste a box of another image, labels by area (0: off); "
         "with --mixup too, each batch takes one of the two."),
    Flag("mixing-max-labels", "train", "mixing_max_labels",
         "Mix (--mixup, --cutmix) only while the labelled set holds at most this many images (default: always)."),
    Flag("test-flips", "train", "test_flips", "Evaluate on each image and its mirror (where flips are valid)."),
    Flag("base-width", None, "base_width", "Filters of the stem (paper: 64); smaller is faster."),
    Flag("max-blocks", None, "max_blocks", "Search space: largest blocks per stack (paper: 12)."),
    Flag("max-stacks", None, "max_stacks", "Search space: largest number of stacks (paper: 5)."),
    Flag("start-arch", None, "start_arch", "Architecture iNAS starts from (default 1x1)."),
    Flag("search-iterations", "search", "iterations", "T_iNAS: search iterations per round (paper: 1)."),
    Flag("premature-fraction", "search", "premature_fraction",
         "Share of the schedule a candidate trains for (paper and default: 0.25; cpu preset: 0.125)."),
    Flag("premature-schedule", "search", "premature_schedule",
         "How candidates train for that share: compressed (the whole schedule squeezed into it; default, cpu and "
         "quick presets) or early_stop (the full schedule stopped early; the paper's, paper preset).",
         PREMATURE_SCHEDULES),
    Flag("inherit-weights", "search", "inherit_weights", "Grown candidates start from their parent's weights."),
    Flag("successive-halving", "search", "successive_halving", "Train candidates briefly, continue only the better ones."),
    Flag("augment", None, "augment", "Force augmentation on or off (default: the dataset's own)."),
    Flag("mc-samples", "query", "mc_samples", "MC-dropout passes (paper: 100)."),
    Flag("pool-subset", "query", "pool_subset", "Rank only a random subset of this many pool points per round."),
    Flag("limit-train", None, "limit_train", "Use a stratified subset of the training pool."),
    Flag("limit-test", None, "limit_test", "Use a stratified subset of the test set."),
    Flag("image-size", None, "image_size",
         "Folders of photos: resize on decode so the shorter side is this many pixels (aspect kept), then "
         "centre-crop a square of that size."),
    Flag("seed", None, "seed", "Seed of everything random in the run (default 0)."),
    Flag("device", None, "device", "auto (CUDA when available), cuda or cpu; CUDA_VISIBLE_DEVICES picks the GPU.",
         DEVICES),
)
FLAGS_BY_NAME: dict[str, Flag] = {entry.flag: entry for entry in RUN_FLAGS}
_FLAGS_BY_PARAM: dict[str, Flag] = {entry.param: entry for entry in RUN_FLAGS}
# The flags ``inas run --resume DIR`` accepts with a value other than the run's: where the data lies
# (the identity check still applies), which device and how many threads compute. Every other setting
# flag must repeat the run's value or be left out: a resumed run keeps its configuration.
RESUME_MAY_CHANGE: tuple[str, ...] = ("data-dir", "device", "threads", "parallel-candidates")


def flag_of(setting: str) -> Optional[str]:
    """``--flag`` of a setting named by its path (``query.mc_samples``) or field (``mc_samples``), or None."""
    entry = _FLAGS_BY_SETTING.get(setting)
    return None if entry is None else f"--{entry.flag}"


_FLAGS_BY_SETTING: dict[str, Flag] = {**{entry.field: entry for entry in RUN_FLAGS},
                                      **{entry.path: entry for entry in RUN_FLAGS}}


def flag_value(param: str, value: Any) -> Any:
    """A command-line value as the setting's value: paths become strings, choices their text, and
    ``--arch inas`` the search (None)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    value = getattr(value, "value", value)  # an Enum member of the option's choices
    if param == "arch" and value == SEARCHED_ARCH:
        return None
    return value


def resume_conflicts(config: "RunConfig", values: dict[str, Any]) -> list[str]:
    """``--flag VALUE (the run has X)`` for every given setting option (keyed by :attr:`Flag.param`,
    None = not given) that would change the stored ``config``, except :data:`RESUME_MAY_CHANGE`."""
    conflicts = []
    for param, value in values.items():
        entry = _FLAGS_BY_PARAM.get(param)
        if entry is None or value is None or entry.flag in RESUME_MAY_CHANGE:
            continue
        owner = config if entry.section is None else getattr(config, entry.section)
        stored = getattr(owner, entry.field)
        given = flag_value(param, value)
        if given != stored:
            conflicts.append(f"--{entry.flag} {getattr(value, 'value', value)} (the run has "
                             f"{SEARCHED_ARCH if stored is None and param == 'arch' else stored})")
    return conflicts


def flag_overrides(values: dict[str, Any]) -> dict[str, Any]:
    """Overrides in the nested layout from option values keyed by :attr:`Flag.param`.

    Values that are None (option not given) are left out; see :func:`flag_value` for the rest.
    """
    nested: dict[str, Any] = {}
    for param, value in values.items():
        entry = _FLAGS_BY_PARAM.get(param)
        if entry is None:
            raise ValueError(f"unknown option {param!r}; options that set a setting are "
                             f"{', '.join('--' + flag.flag for flag in RUN_FLAGS)}")
        if value is None:
            continue
        if entry.section is None:
            nested[entry.field] = flag_value(param, value)
        else:
            nested.setdefault(entry.section, {})[entry.field] = flag_value(param, value)
    return nested


def parse_schedule(text: str) -> list[list[int]]:
    """``"0:2000,10000:5000"`` -> [[0, 2000], [10000, 5000]] (from-labelled : batch), sorted."""
    steps = []
    for part in text.split(","):
        pieces = part.strip().split(":")
        if len(pieces) != 2 or not all(p.strip().isdigit() for p in pieces):
            raise ValueError(f"query schedule step {part.strip()!r} is not FROM:BATCH, e.g. 0:2000,10000:5000")
        steps.append([int(pieces[0]), int(pieces[1])])
    return sorted(steps)


# Presets: partial configurations in the nested layout. "paper" is the paper's protocol (for a GPU);
# "cpu" scales it so one CIFAR-10 run finishes on 2 CPU cores in about 3-10 minutes: 200 -> 3,200
# labels, doubling each round, 24 epochs of 4,000 samples per training (BENCHMARKS.md, "How the cpu
# preset was chosen"), and candidates trained for 1/8 of that instead of the paper's 1/4: half the
# search time and no loss of AUC on 3 seeds (BENCHMARKS.md, "The cost of the search"); "quick" is the
# offline digits default. cpu and quick train with the lowdata recipe, which raised accuracy at every
# labelled size of CIFAR-10 and the AUC on digits at 0.78x the training cost per sample (BENCHMARKS.md,
# "Training recipe"); its MixUp (up to 1,000 labels) raised the quick preset's AUC on digits again, from
# 0.950 to 0.963 (iNAS + softmax response, 3 seeds, each seed higher). paper keeps the paper's.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "recipe": "paper",
        "initial": 2000, "query_schedule": [[0, 2000], [10_000, 5000]], "budget": 50_000,
        "base_width": 64, "limit_train": None, "limit_test": None,
        "train": {"epochs": 200, "epoch_size": 50_000, "batch_size": 128},
        "search": {"premature_schedule": "early_stop"},
        "query": {"mc_samples": 100},
    },
    "cpu": {
        "recipe": "lowdata",
        "initial": 200, "query_schedule": [[0, 200], [400, 400], [800, 800], [1600, 1600]], "budget": 3200,
        "base_width": 16, "limit_train": 10_000, "limit_test": 2000, "max_blocks": 4, "max_stacks": 4,
        # 24 epochs of 4,000 samples at 1,000 labels, growing with sqrt(labelled): 2,000 at 200 labels,
        # 7,155 at 3,200, the same samples over a run's five rounds (BENCHMARKS.md, "Training recipe").
        "train": {"epochs": 24, "epoch_size": 4000, "batch_size": 128, "epoch_size_exponent": 0.5,
                  "epoch_size_reference": 1000},
        "search": {"premature_fraction": 0.125, "premature_schedule": "compressed"},
        "query": {"mc_samples": 50, "pool_subset": None},
    },
    "quick": {
        "recipe": "lowdata",
        "initial": 50, "query_schedule": [[0, 50], [300, 150]], "budget": 600,
        "base_width": 8, "limit_train": None, "limit_test": None, "max_blocks": 4, "max_stacks": 3,
        "train": {"epochs": 20, "epoch_size": 2000, "batch_size": 64},
        "query": {"mc_samples": 50},
    },
}

SMALL_DATASETS = ("digits", "synthetic")


def default_preset(dataset: str, device: str) -> str:
    """``quick`` for the bundled small sets, ``paper`` on a GPU, ``cpu`` otherwise."""
    if dataset in SMALL_DATASETS:
        return "quick"
    if device == "cuda" or (device == "auto" and _cuda_available()):
        return "paper"
    return "cpu"


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_config(overrides: dict[str, Any], preset: Optional[str] = None) -> RunConfig:
    """defaults <- preset <- explicit overrides, validated.

    ``overrides`` is a partial configuration: the run's own fields, sections as nested dicts
    (``{"search": {"premature_fraction": 0.125}}``), or settings by their ``inas run`` option
    (:attr:`Flag.param` of :data:`RUN_FLAGS`, e.g. ``mc_samples``). Values that are None are
    ignored (an option not given).
    """
    if not isinstance(overrides, dict):
        raise ValueError(f"overrides must be a mapping of settings, got {_json_type(overrides)}")
    by_flag = flag_overrides({key: value for key, value in overrides.items() if key in _FLAGS_BY_PARAM})
    given = _nest({key: {name: setting for name, setting in value.items() if setting is not None}
                   if key in SECTIONS and isinstance(value, dict) else value
                   for key, value in overrides.items() if key not in _FLAGS_BY_PARAM and value is not None}, "overrides")
    twice = sorted(f"{section}.{name}" for section in SECTIONS
                   for name in set(by_flag.get(section, {})) & set(given.get(section, {})))
    if twice:
        raise ValueError(f"{', '.join(twice)} given twice in the overrides (by option name and in its section)")
    explicit = _merge(given, by_flag)
    dataset = explicit.get("dataset", RunConfig.dataset)
    device = explicit.get("device", RunConfig.device)
    name = preset or default_preset(dataset, device)
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    recipe = explicit.get("recipe", PRESETS[name].get("recipe", RunConfig.recipe))
    # The named recipe says how to train, the preset how much; explicit settings override either.
    return RunConfig.from_dict(_merge({"train": recipe_settings(recipe)}, PRESETS[name], explicit,
                                      {"preset": name, "recipe": recipe}))
