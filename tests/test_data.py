"""Datasets: uint8 tensors, seeded class-balanced splits and limits, folder layouts, one-line errors."""

from __future__ import annotations

import copy
import socket
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inas_plugins.data import (
    DATASETS,
    DatasetError,
    ImageSet,
    available_datasets,
    channel_stats,
    load_dataset,
    stratified_split,
    stratified_subset,
)
from inas_plugins.data import torchvision_sets


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test loudly if anything opens a socket connection."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def write_image(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def class_colour(label: int) -> np.ndarray:
    return np.array([(40 * label + 10) % 256, (200 - 30 * label) % 256, 90], dtype=np.uint8)


def make_tree(root: Path, counts: dict[str, int], size: tuple[int, int] = (8, 6), ext: str = "png") -> None:
    """root/<class>/<i>.<ext>: flat images of a per-class colour, plus the index in pixel [0, 0]."""
    for label, (name, count) in enumerate(sorted(counts.items())):
        for index in range(count):
            pixels = np.broadcast_to(class_colour(label), (*size, 3)).copy()
            pixels[0, 0] = index
            write_image(root / name / f"{index:03d}.{ext}", pixels)


def assert_one_line(error: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# --- registry -------------------------------------------------------------------------------------


def test_registry_lists_every_dataset_and_rejects_unknown_names():
    assert available_datasets() == ["cifar10", "cifar100", "svhn", "folder", "digits", "synthetic"]
    assert all(DATASETS[name].summary for name in available_datasets())
    with pytest.raises(DatasetError) as error:
        load_dataset("imagenet")
    assert_one_line(error, "'imagenet'", "cifar10, cifar100, svhn, folder, digits, synthetic")
    assert isinstance(error.value, ValueError)


def test_bad_options_name_the_valid_ones():
    with pytest.raises(DatasetError) as error:
        load_dataset("synthetic", n_trian=10)
    assert_one_line(error, "n_trian", "n_train", "num_classes")
    with pytest.raises(DatasetError) as error:
        load_dataset("digits", image_size=8)
    assert_one_line(error, "takes no options")
    with pytest.raises(DatasetError) as error:
        load_dataset("digits", "/tmp")
    assert_one_line(error, "takes no data_dir", "dataset 'folder'")
    with pytest.raises(DatasetError) as error:
        load_dataset("digits", test_fraction=1.0)
    assert_one_line(error, "test_fraction")
    with pytest.raises(DatasetError) as error:
        load_dataset("digits", limit_train=0)
    assert_one_line(error, "limit_train")


# --- digits and synthetic -------------------------------------------------------------------------


def test_digits_shapes_dtypes_classes_and_stratified_split():
    data = load_dataset("digits", progress=False)
    assert data.name == "digits" and data.channels == 1 and data.num_classes == 10 and not data.flips_valid
    assert data.image_size == (8, 8)
    assert data.train.images.dtype == torch.uint8 and data.train.labels.dtype == torch.int64
    assert data.train.images.shape[1:] == (1, 8, 8) and data.train.images.is_contiguous()
    assert len(data.train) + len(data.test) == 1797
    assert len(data.test) == pytest.approx(0.2 * 1797, abs=10)
    assert int(data.train.images.max()) == 255 and int(data.train.images.min()) == 0
    test_counts = data.test.class_counts(10)
    assert min(test_counts) >= 30  # every digit is held out in proportion (~36 each)
    assert len(data.mean) == len(data.std) == 1 and 0 < data.mean[0] < 1
    assert data.describe().startswith("digits: 1438 train / 359 test, 8x8, 1 channel, 10 classes")
    same = load_dataset("digits", progress=False)
    other = load_dataset("digits", seed=1, progress=False)
    assert torch.equal(same.test.images, data.test.images)
    assert not torch.equal(other.test.labels, data.test.labels)


def test_synthetic_is_seeded_and_learnable():
    data = load_dataset("synthetic", seed=3, n_train=200, n_test=100, num_classes=4, image_size=12)
    again = load_dataset("synthetic", seed=3, n_train=200, n_test=100, num_classes=4, image_size=12)
    other = load_dataset("synthetic", seed=4, n_train=200, n_test=100, num_classes=4, image_size=12)
    assert torch.equal(data.train.images, again.train.images) and torch.equal(data.test.labels, again.test.labels)
    assert not torch.equal(data.train.images, other.train.images)
    assert data.train.images.shape == (200, 3, 12, 12) and data.train.images.dtype == torch.uint8
    assert data.train.class_counts() == [50, 50, 50, 50]
    # Nearest class mean (computed on train) classifies the test set: the classes carry real signal.
    train = data.train.images.float().flatten(1)
    means = torch.stack([train[data.train.labels == c].mean(0) for c in range(4)])
    predicted = torch.cdist(data.test.images.float().flatten(1), means).argmin(1)
    assert (predicted == data.test.labels).float().mean() > 0.9


def test_synthetic_options_and_bad_values():
    gray = load_dataset("synthetic", n_train=30, n_test=0, num_classes=3, channels=1, image_size=(6, 10))
    assert gray.channels == 1 and gray.image_size == (6, 10) and len(gray.test) == 0 and gray.num_classes == 3
    with pytest.raises(DatasetError) as error:
        load_dataset("synthetic", num_classes=1)
    assert_one_line(error, "num_classes", "at least 2")


# --- ImageSet, splits, limits ---------------------------------------------------------------------


def test_imageset_subset_getitem_and_cheap_deepcopy():
    images = torch.arange(5 * 3 * 2 * 2, dtype=torch.uint8).reshape(5, 3, 2, 2)
    images_set = ImageSet(images, torch.tensor([0, 1, 0, 1, 2], dtype=torch.int32))
    assert images_set.labels.dtype == torch.int64 and len(images_set) == 5
    part = images_set.subset([4, 0])
    assert torch.equal(part.images, images[[4, 0]]) and part.labels.tolist() == [2, 0]
    masked = images_set.subset(torch.tensor([True, False, False, False, True]))
    assert masked.labels.tolist() == [0, 2]
    part.images[0].zero_()  # a subset is a copy
    assert images_set.images[4].sum() > 0
    image, label = images_set[1]
    assert torch.equal(image, images[1]) and int(label) == 1
    shared = copy.deepcopy(images_set)  # what baal's ActiveLearningDataset.pool does on every access
    assert shared is not images_set and shared.images is images_set.images
    with pytest.raises(IndexError):
        images_set.subset([5])
    with pytest.raises(ValueError, match="uint8"):
        ImageSet(images.float(), torch.zeros(5, dtype=torch.int64))
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        ImageSet(images, torch.zeros(4, dtype=torch.int64))


def test_imageset_works_inside_baal_active_learning_dataset():
    from baal.active import ActiveLearningDataset

    data = load_dataset("synthetic", n_train=40, n_test=8)
    active = ActiveLearningDataset(data.train)
    active.label_randomly(10)
    assert len(active) == 10 and len(active.pool) == 30
    image, label = active[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.uint8 and label.dtype == torch.int64


def test_stratified_split_and_subset_keep_class_shares():
    labels = np.repeat(np.arange(3), [10, 20, 1])
    train, test = stratified_split(labels, 0.3, seed=0)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(31))
    assert np.bincount(labels[test], minlength=3).tolist() == [3, 6, 0]  # a lone item stays in train
    assert np.array_equal(stratified_split(labels, 0.3, seed=0)[1], test)
    assert not np.array_equal(stratified_split(labels, 0.3, seed=1)[1], test)
    picked = stratified_subset(labels, 9, seed=0)
    assert len(picked) == 9 and np.bincount(labels[picked], minlength=3).tolist() == [3, 6, 0]
    assert len(stratified_subset(labels, 100, seed=0)) == 31


def test_limits_shrink_balanced_and_recompute_statistics():
    full = load_dataset("digits", progress=False)
    small = load_dataset("digits", limit_train=100, limit_test=50, progress=False)
    assert len(small.train) == 100 and len(small.test) == 50
    assert small.train.class_counts(10) == [10] * 10
    assert torch.equal(small.train.images, load_dataset("digits", limit_train=100, limit_test=50).train.images)
    assert small.mean == channel_stats(small.train.images)[0] and small.mean != full.mean
    assert len(load_dataset("digits", limit_train=10**6).train) == len(full.train)


def test_channel_stats_match_a_float_computation():
    images = torch.randint(0, 256, (20, 3, 5, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = channel_stats(images)
    scaled = images.double() / 255
    assert np.allclose(mean, scaled.mean(dim=(0, 2, 3)).numpy(), atol=1e-6)
    assert np.allclose(std, scaled.std(dim=(0, 2, 3), unbiased=False).numpy(), atol=1e-6)


# --- folder ---------------------------------------------------------------------------------------


def test_folder_with_train_and_test(tmp_path: Path):
    make_tree(tmp_path / "train", {"cat": 4, "dog": 3})
    make_tree(tmp_path / "test", {"cat": 2, "dog": 2}, ext="jpg")
    data = load_dataset("folder", tmp_path, progress=False)
    assert data.classes == ["cat", "dog"] and data.channels == 3 and data.flips_valid
    assert data.image_size == (8, 6) and len(data.train) == 7 and len(data.test) == 4
    assert data.train.labels.tolist() == [0, 0, 0, 0, 1, 1, 1]
    expected = np.broadcast_to(class_colour(1), (8, 6, 3)).copy()
    expected[0, 0] = 2
    assert torch.equal(data.train.images[6], torch.from_numpy(expected).permute(2, 0, 1))  # PNG is exact
    jpeg_error = (data.test.images[2].float() - torch.from_numpy(class_colour(1)).float()[:, None, None]).abs()
    assert jpeg_error.mean() < 8 and data.test.labels.tolist() == [0, 0, 1, 1]
    assert str(tmp_path) in data.describe()


@pytest.mark.parametrize("with_train_folder", [True, False])
def test_folder_without_test_holds_out_a_seeded_stratified_fraction(tmp_path: Path, with_train_folder: bool):
    make_tree(tmp_path / "train" if with_train_folder else tmp_path, {"a": 10, "b": 5, "c": 5})
    data = load_dataset("folder", tmp_path, test_fraction=0.2, seed=0, progress=False)
    assert data.test.class_counts() == [2, 1, 1] and data.train.class_counts() == [8, 4, 4]
    held_out = data.test.images[:, 0, 0, 0].tolist()  # the per-class index written into each image
    again = load_dataset("folder", tmp_path, test_fraction=0.2, seed=0, progress=False)
    assert again.test.images[:, 0, 0, 0].tolist() == held_out
    other_seeds = [load_dataset("folder", tmp_path, seed=s, progress=False).test.images[:, 0, 0, 0].tolist()
                   for s in (1, 2, 3)]
    assert any(other != held_out for other in other_seeds)
    assert sorted(data.train.images[:, 0, 0, 0].tolist() + held_out) == sorted(list(range(10)) + 2 * list(range(5)))


def test_folder_bad_layouts_give_one_line_errors(tmp_path: Path):
    cases = []
    with pytest.raises(DatasetError) as error:
        load_dataset("folder")
    cases.append((error, "needs data_dir DIR"))
    with pytest.raises(DatasetError) as error:
        load_dataset("folder", tmp_path / "missing")
    cases.append((error, "does not exist", "missing"))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DatasetError) as error:
        load_dataset("folder", tmp_path / "file.txt")
    cases.append((error, "not a directory"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as error:
        load_dataset("folder", tmp_path / "empty")
    cases.append((error, "no class sub-folders", "train/<class>"))
    make_tree(tmp_path / "hollow", {"a": 2})
    (tmp_path / "hollow" / "b").mkdir()
    (tmp_path / "hollow" / "b" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError) as error:
        load_dataset("folder", tmp_path / "hollow")
    cases.append((error, "holds no images", str(tmp_path / "hollow" / "b")))
    make_tree(tmp_path / "mismatch" / "train", {"a": 2, "b": 2})
    make_tree(tmp_path / "mismatch" / "test", {"a": 1, "c": 1})
    with pytest.raises(DatasetError) as error:
        load_dataset("folder", tmp_path / "mismatch")
    cases.append((error, "different classes", "only in train: b", "only in test: c"))
    make_tree(tmp_path / "testonly" / "test", {"a": 1})
    with pytest.raises(DatasetError) as error:
        load_dataset("folder", tmp_path / "testonly")
    cases.append((error, "no train/"))
    make_tree(tmp_path / "corrupt", {"a": 2, "b": 2})
    (tmp_path / "corrupt" / "a" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError) as error:
        load_dataset("folder", tmp_path / "corrupt")
    cases.append((error, "cannot decode", "bad.png"))
    with pytest.raises(DatasetError) as error:
        load_dataset("folder", tmp_path / "corrupt", color="sepia")
    cases.append((error, "sepia", "auto, rgb, gray"))
    for error, *fragments in cases:
        assert_one_line(error, *fragments)


def test_folder_mismatched_sizes_fail_or_resize_on_request(tmp_path: Path):
    make_tree(tmp_path, {"a": 3, "b": 3}, size=(8, 8))
    write_image(tmp_path / "b" / "wide.png", np.zeros((8, 12, 3), dtype=np.uint8))
    with pytest.raises(DatasetError) as error:
        load_dataset("folder", tmp_path, progress=False)
    assert_one_line(error, "wide.png", "8x12", "8x8", "image_size")
    resized = load_dataset("folder", tmp_path, image_size=6, progress=False)
    assert resized.image_size == (6, 6) and len(resized.train) + len(resized.test) == 7


def test_folder_colour_modes(tmp_path: Path):
    gray_root, mixed_root = tmp_path / "gray", tmp_path / "mixed"
    for name in ("a", "b"):
        for index in range(3):
            write_image(gray_root / name / f"{index}.png", np.full((4, 4), 50 * index, dtype=np.uint8))
    gray = load_dataset("folder", gray_root, progress=False)
    assert gray.channels == 1 and gray.train.images.shape[1] == 1 and len(gray.mean) == 1
    make_tree(mixed_root, {"a": 2, "b": 2}, size=(4, 4))
    write_image(mixed_root / "a" / "gray.png", np.full((4, 4), 77, dtype=np.uint8))
    write_image(mixed_root / "b" / "alpha.png", np.full((4, 4, 4), 99, dtype=np.uint8))
    mixed = load_dataset("folder", mixed_root, test_fraction=0.5, seed=0, progress=False)
    everything = torch.cat([mixed.train.images, mixed.test.images])
    assert mixed.channels == 3 and everything.shape[1] == 3
    gray_as_rgb = (everything == 77).all(dim=(1, 2, 3))
    assert gray_as_rgb.sum() == 1  # the grayscale image became RGB by repeating its channel
    assert (everything == 99).all(dim=(1, 2, 3)).sum() == 1  # alpha dropped
    forced = load_dataset("folder", mixed_root, color="gray", progress=False)
    assert forced.channels == 1


def test_folder_cache_is_opt_in_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    data_dir, cache_dir = tmp_path / "data", tmp_path / "cache"
    make_tree(data_dir, {"a": 3, "b": 3})
    before = sorted(p.name for p in data_dir.rglob("*"))
    first = load_dataset("folder", data_dir, cache_dir=cache_dir, progress=False)
    assert len(list(cache_dir.glob("folder-*.pt"))) == 1
    assert sorted(p.name for p in data_dir.rglob("*")) == before  # nothing written next to the images

    from inas_plugins.data import decode

    def no_decoding(path: object) -> torch.Tensor:
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(decode, "decode_file", no_decoding)
    second = load_dataset("folder", data_dir, cache_dir=cache_dir, progress=False)
    assert torch.equal(first.train.images, second.train.images) and torch.equal(first.test.labels, second.test.labels)


# --- torchvision sets -----------------------------------------------------------------------------


def test_cifar10_offline_without_download_names_data_dir_and_folder(tmp_path: Path, no_network: None):
    with pytest.raises(DatasetError) as error:
        load_dataset("cifar10", tmp_path, download=False)
    assert_one_line(error, "cifar10", str(tmp_path), "data_dir DIR", "dataset 'folder'")


def test_cifar10_failed_download_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None):
    attempts = []

    def offline(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DatasetError) as error:
        load_dataset("cifar10", tmp_path / "cache", download=True)
    assert attempts, "the download was not attempted"
    assert_one_line(error, "could not be downloaded (offline?", "name resolution", "data_dir DIR", "dataset 'folder'")


def test_default_data_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("INAS_DATA_DIR", str(tmp_path))
    assert torchvision_sets.default_data_dir("svhn") == tmp_path / "svhn"
    monkeypatch.delenv("INAS_DATA_DIR")
    assert torchvision_sets.default_data_dir("svhn").parts[-2:] == ("inas-plugins", "svhn")


def test_torchvision_arrays_become_uint8_nchw(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (6, 4, 5, 3), dtype=np.uint8)

    class FakeCifar:
        def __init__(self, root: object, train: bool, download: bool) -> None:
            self.data, self.targets, self.classes = nhwc, [0, 1, 2, 0, 1, 2], ["x", "y", "z"]

    class FakeSvhn:
        def __init__(self, root: object, split: str, download: bool) -> None:
            self.data, self.labels = nhwc.transpose(0, 3, 1, 2), np.array([0, 1, 2, 3, 4, 5])

    monkeypatch.setattr(torchvision_sets.datasets, "CIFAR10", FakeCifar)
    monkeypatch.setattr(torchvision_sets.datasets, "SVHN", FakeSvhn)
    cifar = load_dataset("cifar10", tmp_path, download=False)
    assert cifar.train.images.shape == (6, 3, 4, 5) and cifar.train.images.is_contiguous()
    assert torch.equal(cifar.train.images, torch.from_numpy(nhwc).permute(0, 3, 1, 2))
    assert cifar.classes == ["x", "y", "z"] and cifar.flips_valid
    svhn = load_dataset("svhn", tmp_path, download=False)
    assert torch.equal(svhn.test.images, cifar.test.images) and not svhn.flips_valid and svhn.num_classes == 10


def test_cifar10_from_an_image_folder_copy(tmp_path: Path):
    classes = {f"class{c}": 1 for c in range(10)}
    make_tree(tmp_path / "train", classes, size=(4, 4))
    make_tree(tmp_path / "test", classes, size=(4, 4))
    data = load_dataset("cifar10", tmp_path, download=False, progress=False)
    assert data.name == "cifar10" and data.num_classes == 10 and data.flips_valid and len(data.train) == 10
    with pytest.raises(DatasetError) as error:
        load_dataset("cifar100", tmp_path, download=False, progress=False)
    assert_one_line(error, "10 classes", "cifar100 has 100", "dataset 'folder'")


def test_digits_match_scikit_learn(monkeypatch: pytest.MonkeyPatch):
    from sklearn.datasets import load_digits

    from inas_plugins.data import digits

    pixels, targets = digits._read_digits()
    bunch = load_digits()
    assert np.array_equal(pixels, bunch.data) and np.array_equal(targets, bunch.target)
    monkeypatch.setattr(digits, "DIGITS_FILE", ("no", "such", "file.csv.gz"))  # the fallback path
    fallback_pixels, _ = digits._read_digits()
    assert np.array_equal(fallback_pixels, bunch.data)
