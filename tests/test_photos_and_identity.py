"""Folders of real photos (--image-size, the memory estimate), the dataset identity a run stores,
report groups by it, and the light commands' start-up without torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from inas_plugins.atomic import atomic_write_json
from inas_plugins.data import DatasetError, load_dataset
from inas_plugins.data.decode import fit_to_square
from inas_plugins.data.folder import DECODE_PEAK_FACTOR, find_layout
from inas_plugins.report import build_report


def photo(path, height, width, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)


@pytest.mark.parametrize("height,width", [(30, 40), (40, 30), (13, 50), (12, 12), (8, 8)])
def test_fit_to_square_is_torchvisions_resize_then_centre_crop(height, width) -> None:
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    reference = v2.Compose([v2.Resize(12, antialias=True), v2.CenterCrop(12)])(image)
    fitted = fit_to_square(image, 12)
    assert fitted.shape == (3, 12, 12)
    assert torch.equal(fitted, reference)


def test_a_folder_of_mixed_photo_sizes_loads_with_image_size(tmp_path) -> None:
    for index, (h, w) in enumerate([(60, 80), (80, 60), (64, 64), (33, 100)]):
        photo(tmp_path / "train" / ("a" if index % 2 else "b") / f"{index}.png", h, w, seed=index)
        photo(tmp_path / "test" / ("a" if index % 2 else "b") / f"{index}.jpg", h, w, seed=10 + index)
    with pytest.raises(DatasetError, match="pass image_size S"):
        load_dataset("folder", tmp_path, progress=False)
    data = load_dataset("folder", tmp_path, image_size=16, progress=False)
    assert data.image_size == (16, 16) and len(data.train) == 4 and len(data.test) == 4
    original = torch.from_numpy(np.array(Image.open(tmp_path / "train" / "b" / "0.png"))).permute(2, 0, 1)
    assert torch.equal(data.train.images[2], fit_to_square(original, 16))  # class b: 0.png, 2.png


def test_the_memory_estimate_refuses_with_the_numbers_before_decoding(tmp_path) -> None:
    for index in range(3):
        photo(tmp_path / "a" / f"{index}.png", 400, 300)
        photo(tmp_path / "b" / f"{index}.png", 400, 300)
    layout = find_layout(tmp_path)
    needed = DECODE_PEAK_FACTOR * 6 * 3 * 400 * 300
    with pytest.raises(DatasetError) as error:
        load_dataset("folder", tmp_path, memory_limit=needed - 1, progress=False)
    message = str(error.value)
    assert "decoding 6 images of 400x300" in message and "pass image_size S" in message and "\n" not in message
    assert error.value.settings == ("image_size",)
    assert len(layout.all_files) == 6
    assert load_dataset("folder", tmp_path, memory_limit=needed, progress=False).image_size == (400, 300)
    small = load_dataset("folder", tmp_path, image_size=16, memory_limit=DECODE_PEAK_FACTOR * 6 * 3 * 16 * 16,
                         progress=False)
    assert small.image_size == (16, 16)


def test_a_single_class_folder_is_refused(tmp_path) -> None:
    for index in range(4):
        photo(tmp_path / "train" / "only" / f"{index}.png", 8, 8)
    with pytest.raises(DatasetError, match="has one class"):
        load_dataset("folder", tmp_path, progress=False)


def test_the_identity_follows_the_content_not_the_place(tmp_path) -> None:
    for name in ("a", "b"):
        for index in range(3):
            photo(tmp_path / "data" / name / f"{index}.png", 8, 8, seed=index + 5 * (name == "b"))
    first = load_dataset("folder", tmp_path / "data", progress=False).identity()
    shutil.copytree(tmp_path / "data", tmp_path / "moved")
    moved = load_dataset("folder", tmp_path / "moved", progress=False).identity()
    assert {**moved, "path": first["path"]} == first and moved["path"] == str(tmp_path / "moved")
    photo(tmp_path / "moved" / "a" / "0.png", 8, 8, seed=99)  # same name and size, other pixels
    edited = load_dataset("folder", tmp_path / "moved", progress=False).identity()
    assert edited["files"] == first["files"] and edited["fingerprint"] != first["fingerprint"]
    limited = load_dataset("folder", tmp_path / "data", limit_train=2, progress=False).identity()
    assert limited["train"] == 2 and limited["fingerprint"] != first["fingerprint"]
    digits = load_dataset("digits", progress=False).identity()
    assert digits["kind"] == "digits" and digits["path"] is None and digits["files"] is None


def write_run(path, seed, identity, accuracies):
    path.mkdir(parents=True)
    config = {"dataset": "folder", "query": {"heuristic": "softmax_response"}, "arch": None, "seed": seed,
              "data_dir": f"/data/{path.name}", "data_identity": identity}
    rounds = [{"round": r, "labelled": 10 * (r + 1), "arch": [1, 1], "params": 10, "depth": 4, "test_accuracy": a,
               "candidates": []} for r, a in enumerate(accuracies)]
    atomic_write_json(path / "results.json", {"config": config, "rounds": rounds, "status": "complete"})
    return path


def test_report_groups_runs_by_data_identity_not_by_path(tmp_path) -> None:
    identity = {"kind": "folder", "path": "/data/x", "train": 40, "test": 10, "image_size": [8, 8], "channels": 3,
                "classes": ["a", "b"], "files": "f1", "fingerprint": "aaaaaaaaaaaaaaaa"}
    runs = [
        write_run(tmp_path / "x0", 0, identity, [0.5, 0.6]),
        write_run(tmp_path / "x1", 1, {**identity, "path": "/elsewhere/x"}, [0.7, 0.8]),  # a moved copy
        write_run(tmp_path / "y0", 0, {**identity, "classes": ["a", "b", "c"], "fingerprint": "bbbbbbbbbbbbbbbb"},
                  [0.2, 0.3]),
    ]
    groups = build_report(runs)
    assert [len(group.runs) for group in groups] == [2, 1]
    assert "data=aaaaaaaaaaaa" in groups[0].label and "data=bbbbbbbbbbbb" in groups[1].label


LIGHT = """
import sys
from inas_cli.main import app
try:
    app(sys.argv[1:], prog_name="inas")
except SystemExit as exit:
    assert not exit.code, exit.code
heavy = sorted(m for m in ("torch", "timm", "baal", "matplotlib", "numpy", "mlflow") if m in sys.modules)
print("HEAVY", heavy)
"""


@pytest.mark.parametrize("args", [["--help"], ["space", "--json"], ["space"], ["heuristics", "--help"],
                                  ["run", "--help"], ["report", "--help"], ["track", "sync", "--help"]])
def test_light_commands_import_neither_torch_nor_timm(args) -> None:
    output = subprocess.run([sys.executable, "-c", LIGHT, *args], capture_output=True, text=True, check=True).stdout
    assert output.strip().splitlines()[-1] == "HEAVY []", output
    if args == ["space", "--json"]:
        assert json.loads(output.splitlines()[0])["nodes"][0] == [1, 1]


@pytest.mark.slow
def test_importing_the_package_still_registers_the_networks_with_timm() -> None:
    for order in ("import inas_plugins, timm", "import timm, inas_plugins"):
        code = f"{order}; print(timm.create_model('inas_resnet_i1_j2', num_classes=3).__class__.__name__)"
        assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True).stdout.strip() == "INASResNet"


EXPORTS = """
import sys
import inas_plugins
light = sorted(m for m in ("torch", "timm", "baal") if m in sys.modules)
from inas_plugins import QueryOptions, SearchOptions, TrainRecipe, ScoreHeuristic, register_heuristic
from inas_plugins.heuristics import HEURISTIC_CLASSES, get_heuristic_class, list_heuristics
registered = sorted({get_heuristic_class(info.name).__name__ for info in list_heuristics() if info.source != "tests"})
exported = sorted(name for name in HEURISTIC_CLASSES if getattr(inas_plugins, name) is not None)
print(light, registered == sorted(HEURISTIC_CLASSES) == exported, set(inas_plugins.__all__) <= set(dir(inas_plugins)))
"""


@pytest.mark.slow  # a fresh interpreter imports torch, timm and baal: ~10 s of CPU
def test_the_package_exports_the_settings_and_every_heuristic_class_lazily() -> None:
    output = subprocess.run([sys.executable, "-c", EXPORTS], capture_output=True, text=True, check=True).stdout
    assert output.strip().splitlines()[-1] == "[] True True", output
