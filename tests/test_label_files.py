"""``inas label`` through plain files (export / import / sync / status) on tiny generated image folders.

The "annotator" is an oracle that knows each generated image's class from its file name; every
round goes through the command line exactly as a user of CVAT or a spreadsheet would.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from inas_cli.main import app

CLASSES = ("top", "left")
TINY = ["--initial", "8", "--query-size", "6", "--budget", "26", "--epochs", "2", "--epoch-size", "128",
        "--base-width", "4", "--max-blocks", "2", "--max-stacks", "2", "--device", "cpu"]


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def draw(label: int, rng: np.random.Generator) -> Image.Image:
    """An 8x8 RGB image: noise, with the top half (class 0) or the left half (class 1) bright."""
    pixels = rng.integers(0, 60, (8, 8, 3)).astype(np.uint8)
    if label == 0:
        pixels[:4] += 150
    else:
        pixels[:, :4] += 150
    return Image.fromarray(pixels)


def make_pool(root: Path, n: int = 40, test: int = 6, seeds: int = 0, seed: int = 0) -> Path:
    """DIR/unlabelled/sub<k>/img<NNN>.png (class = NNN % 2), optional test/<class>/ and labelled/<class>/."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        path = root / "unlabelled" / f"sub{i % 3}" / f"img{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        draw(i % 2, rng).save(path)
    for label, name in enumerate(CLASSES):
        for i in range(test):
            path = root / "test" / name / f"t{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            draw(label, rng).save(path)
        for i in range(seeds):
            path = root / "labelled" / name / f"s{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            draw(label, rng).save(path)
    return root


def truth(path: str) -> str:
    return CLASSES[int(re.search(r"img(\d+)", path).group(1)) % 2]


def label_batch(run: Path, tmp_path: Path, fmt: str = "csv", keep=None) -> Path:
    """Export the batch, fill in the oracle's classes (only for paths ``keep`` accepts), return the file."""
    exported = invoke("label", "export", run, "--format", fmt)
    assert exported.exit_code == 0, exported.output
    answered = tmp_path / f"answers.{fmt}"
    if fmt == "json":
        rows = json.loads(exported.output)
        for row in rows:
            row["class"] = truth(row["path"]) if keep is None or keep(row["path"]) else ""
        answered.write_text(json.dumps(rows))
    else:
        rows = list(csv.DictReader(exported.output.splitlines()))
        with open(answered, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            for row in rows:
                row["class"] = truth(row["path"]) if keep is None or keep(row["path"]) else ""
                writer.writerow(row)
    return answered


def status(run: Path) -> dict:
    result = invoke("label", "status", run, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def independent_accuracy(run: Path, data: Path) -> float:
    """The saved network's accuracy on data/test, decoded with PIL and normalised here, not by the package."""
    from inas_plugins.models import build_inas_resnet
    from inas_plugins.space import Arch

    payload = torch.load(run / "model.pt", weights_only=True)
    model = build_inas_resnet(Arch(*payload["arch"]), num_classes=2, in_chans=3, base_width=4)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    mean = torch.tensor(payload["input_format"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(payload["input_format"]["std"]).view(1, 3, 1, 1)
    images, targets = [], []
    for label, name in enumerate(CLASSES):
        for path in sorted((data / "test" / name).glob("*.png")):
            images.append(torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1))
            targets.append(label)
    x = (torch.stack(images).float() / 255.0 - mean) / std
    project = json.loads((run / "project.json").read_text())
    mirrored = project["flips"] and project["config"]["train"]["test_flips"]  # flip TTA: image and mirror summed
    with torch.no_grad():
        logits = model(x) + (model(x.flip(-1)) if mirrored else 0)
    return float((logits.argmax(1) == torch.tensor(targets)).float().mean())


@pytest.fixture
def run(tmp_path) -> tuple[Path, Path]:
    data = make_pool(tmp_path / "data", seeds=2)
    run_dir = tmp_path / "run"
    result = invoke("label", "init", run_dir, "--data-dir", data, "--classes", ",".join(CLASSES), *TINY)
    assert result.exit_code == 0, result.output
    return run_dir, data


def test_three_rounds_through_export_and_import(run, tmp_path) -> None:
    run_dir, data = run
    assert (run_dir / "labels.csv").exists() and (run_dir / "project.json").exists()
    info = status(run_dir)
    assert (info["labelled"], info["pending"], info["rounds"]) == (4, 8, 0)  # the 4 seed images count
    queried: list[str] = []
    for round_index in range(3):
        batch = [row["path"] for row in csv.DictReader(invoke("label", "export", run_dir).output.splitlines())]
        assert not set(batch) & set(queried), "an image was asked for twice"
        queried += batch
        fmt = "json" if round_index == 1 else "csv"
        imported = invoke("label", "import", run_dir, label_batch(run_dir, tmp_path, fmt))
        assert imported.exit_code == 0 and f"imported {len(batch)} new answer(s)" in imported.output, imported.output
        synced = invoke("label", "sync", run_dir, "--quiet")
        assert synced.exit_code == 0, synced.output
        assert f"round {round_index}: " in synced.output and "test accuracy" in synced.output
    info = status(run_dir)
    assert info["rounds"] == 3 and info["labelled"] == 4 + 8 + 6 + 6 and info["conflicts"] == 0
    assert [entry["labelled"] for entry in info["history"]] == [12, 18, 24]
    assert all(entry["accuracy_kind"] == "test" for entry in info["history"])
    # The accuracy the round recorded is the saved network's accuracy on test/, recomputed independently.
    assert info["accuracy"] == pytest.approx(independent_accuracy(run_dir, data), abs=1e-4)
    # Softmax response: the query score of an image is 1 - the probability of the predicted class.
    rows = list(csv.DictReader(invoke("label", "export", run_dir).output.splitlines()))
    assert len(rows) == 2  # the budget (26) leaves 2 of the next batch of 6
    for row in rows:
        assert row["predicted"] in CLASSES and row["class"] == ""
        assert float(row["query_score"]) == pytest.approx(1 - float(row["confidence"]), abs=1e-5)
    # Every stored label is the oracle's, with the seeds from labelled/<class>/.
    labels = list(csv.DictReader(open(run_dir / "labels.csv")))
    assert {row["source"] for row in labels} == {"seed", "import"}
    for row in labels:
        expected = truth(row["path"]) if row["source"] == "import" else row["path"].split("/")[1]
        assert row["class"] == expected
    text = invoke("label", "status", run_dir).output
    assert "rounds done 3" in text and "test accuracy" in text and "labelled 24" in text


def test_the_run_learns_the_task(tmp_path) -> None:
    """With a few epochs the generated classes (bright top vs bright left half) are learnt."""
    data = make_pool(tmp_path / "data", n=30, test=10)
    run_dir = tmp_path / "run"
    args = ["--initial", "12", "--query-size", "6", "--epochs", "10", "--epoch-size", "256", "--epoch-size-exponent", "0",
            "--batch-size", "32", "--base-width", "4",
            "--max-blocks", "2", "--max-stacks", "2", "--device", "cpu", "--no-augment"]
    assert invoke("label", "init", run_dir, "--data-dir", data, "--classes", "top,left", *args).exit_code == 0
    assert invoke("label", "import", run_dir, label_batch(run_dir, tmp_path)).exit_code == 0
    synced = invoke("label", "sync", run_dir, "-q")
    assert synced.exit_code == 0, synced.output
    assert status(run_dir)["accuracy"] >= 0.9


def test_cross_validated_estimate_without_a_test_folder(tmp_path) -> None:
    data = make_pool(tmp_path / "data", n=24, test=0)
    run_dir = tmp_path / "run"
    assert invoke("label", "init", run_dir, "--data-dir", data, "--classes", "top,left", *TINY).exit_code == 0
    assert invoke("label", "import", run_dir, label_batch(run_dir, tmp_path)).exit_code == 0
    synced = invoke("label", "sync", run_dir, "-q")
    assert synced.exit_code == 0, synced.output
    assert "cross-validated accuracy" in synced.output and "3-fold cross-validation on the 8 labelled images" in synced.output
    assert "test accuracy" not in synced.output
    info = status(run_dir)
    assert info["accuracy_kind"] == "cross-validated" and 0.0 <= info["accuracy"] <= 1.0
    # A fraction of 8 held-out predictions: k/8.
    assert info["accuracy"] * 8 == pytest.approx(round(info["accuracy"] * 8), abs=1e-3)


def test_two_rounds_with_weight_inheritance_and_successive_halving(tmp_path) -> None:
    """Every search option works in `inas label` as in `inas run` (issue 22: the second sync of an
    --inherit-weights run failed with "inheriting weights from parent_model needs parent_seen")."""
    data = make_pool(tmp_path / "data")
    run_dir = tmp_path / "run"
    options = [*TINY[:TINY.index("--epochs")], "--epochs", "4", *TINY[TINY.index("--epochs") + 2:],
               "--premature-fraction", "0.5", "--inherit-weights", "--successive-halving"]
    assert invoke("label", "init", run_dir, "--data-dir", data, "--classes", ",".join(CLASSES), *options).exit_code == 0
    for round_index in range(2):
        assert invoke("label", "import", run_dir, label_batch(run_dir, tmp_path)).exit_code == 0
        synced = invoke("label", "sync", run_dir, "-q")
        assert synced.exit_code == 0 and f"round {round_index}: " in synced.output, synced.output
    rounds = json.loads((run_dir / "state.json").read_text())["rounds"]
    # Round 0 has no parent; round 1's candidates all start from round 0's network.
    inherited = [[c["inherited"] for c in r["candidates"]] for r in rounds]
    assert not any(inherited[0]) and len(inherited[1]) >= 2 and all(inherited[1])
    # Halving with 2 premature epochs: every candidate trained 1 epoch, only the best one on to 2.
    assert all(sorted(c["epochs"] for c in r["candidates"]) == [1] * (len(r["candidates"]) - 1) + [2] for r in rounds)
    # The saved network records what it was trained on: every label of the last round.
    trained_on = torch.load(run_dir / "model.pt", weights_only=True)["trained_on"]
    labelled = [row["path"] for row in csv.DictReader(open(run_dir / "labels.csv")) if row["class"]]
    assert sorted(trained_on) == sorted(labelled) and len(trained_on) == rounds[-1]["labelled"] == 8 + 6


def test_sync_says_how_many_labels_are_missing_and_changes_nothing(run, tmp_path) -> None:
    run_dir, _ = run
    batch = [row["path"] for row in csv.DictReader(invoke("label", "export", run_dir).output.splitlines())]
    answered = label_batch(run_dir, tmp_path, keep=lambda path: path in batch[:3])
    assert "imported 3 new" in invoke("label", "import", run_dir, answered).output
    before = (run_dir / "state.json").read_bytes()
    synced = invoke("label", "sync", run_dir, "-q")
    assert synced.exit_code == 0 and "5 of the 8 images of batch 0 still need an answer" in synced.output
    assert (run_dir / "state.json").read_bytes() == before
    assert status(run_dir)["pending"] == 5
    forced = invoke("label", "sync", run_dir, "-q", "--force")
    assert forced.exit_code == 0 and "round 0: " in forced.output and status(run_dir)["labelled"] == 7


def test_import_twice_adds_nothing_and_a_changed_class_wins_and_counts_as_a_conflict(run, tmp_path) -> None:
    run_dir, _ = run
    answered = label_batch(run_dir, tmp_path)
    assert "imported 8 new" in invoke("label", "import", run_dir, answered).output
    labels_before = (run_dir / "labels.csv").read_bytes()
    assert "imported 0 new" in invoke("label", "import", run_dir, answered).output
    assert (run_dir / "labels.csv").read_bytes() == labels_before
    first = next(csv.DictReader(open(answered)))
    other = "top" if first["class"] == "left" else "left"
    correction = tmp_path / "correction.csv"
    correction.write_text(f"path,class\n{first['path']},{other}\n")
    assert "imported 1 new" in invoke("label", "import", run_dir, correction).output
    info = status(run_dir)
    assert info["conflicts"] == 1 and info["labelled"] == 4 + 8
    rows = list(csv.DictReader(invoke("label", "export", run_dir, "--what", "labels").output.splitlines()))
    assert {row["path"]: row["class"] for row in rows}[first["path"]] == other
    assert len(list(csv.DictReader(open(run_dir / "labels.csv")))) == 4 + 8 + 1  # nothing was dropped


@pytest.mark.parametrize("content,message", [
    ("path,class\nunlabelled/sub0/img006.png,top\nunlabelled/nope.png,top\n",
     "1 path(s) are not images of the project, e.g. 'unlabelled/nope.png' (row 3)"),
    ("path,class\nunlabelled/sub0/img006.png,top\nunlabelled/sub0/img000.png,bird\n",
     "'bird' (row 3); valid classes are top, left"),
    ("path,class,colour\nunlabelled/sub0/img000.png,top,red\n", "unknown column(s) colour; valid columns are"),
    ("image,label\nunlabelled/sub0/img000.png,top\n", "unknown column(s) image, label"),
    ("path\nunlabelled/sub0/img000.png\n", "lacks the column(s) class"),
])
def test_a_bad_import_is_one_line_and_stores_nothing(run, tmp_path, content, message) -> None:
    run_dir, _ = run
    good = tmp_path / "good.csv"
    good.write_text("path,class\nunlabelled/sub0/img003.png,left\n")
    assert invoke("label", "import", run_dir, good).exit_code == 0
    before = (run_dir / "labels.csv").read_bytes()
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    result = invoke("label", "import", run_dir, bad)
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert (run_dir / "labels.csv").read_bytes() == before


def test_deleted_and_unreadable_images_are_left_out_and_their_labels_kept(run, tmp_path) -> None:
    run_dir, data = run
    assert invoke("label", "import", run_dir, label_batch(run_dir, tmp_path)).exit_code == 0
    batch = [row["path"] for row in csv.DictReader(invoke("label", "export", run_dir).output.splitlines())]
    (data / batch[0]).unlink()
    (data / batch[1]).write_bytes(b"not a png")
    synced = invoke("label", "sync", run_dir, "-q")
    assert synced.exit_code == 0, synced.output
    assert f"1 image(s) no longer exist and are left out (their labels are kept): {batch[0]}" in synced.output
    assert f"1 image(s) cannot be read and are left out (their labels are kept): {batch[1]}" in synced.output
    info = status(run_dir)
    assert info["history"][0]["labelled"] == 4 + 8 - 2 and info["labelled"] == 4 + 8
    stored = {row["path"] for row in csv.DictReader(open(run_dir / "labels.csv"))}
    assert {batch[0], batch[1]} <= stored


def test_init_refuses_bad_input_with_one_line_and_writes_nothing(tmp_path) -> None:
    data = make_pool(tmp_path / "data", n=6, test=1)
    (data / "labelled" / "bird").mkdir(parents=True)
    run_dir = tmp_path / "run"
    cases = [
        (["--data-dir", tmp_path / "missing", "--classes", "top,left"], "has no unlabelled/ folder"),
        (["--data-dir", data, "--classes", "top"], "needs at least two classes"),
        (["--data-dir", data, "--classes", "top,top"], "class names given twice: top"),
        (["--data-dir", data], "give the classes with either --classes"),
        (["--data-dir", data, "--classes", "top,left"], "labelled/bird is not one of the classes (top, left)"),
        (["--data-dir", data, "--classes", "top,left,bird", "--heuristic", "oracle"], "oracle"),
        (["--data-dir", data, "--classes", "top,left,bird", "--epochs", "0"], "--epochs"),
        (["--data-dir", data, "--classes", "top,left,bird", "--mc-samples", "0"],
         "--mc-samples must be a positive integer, got 0"),
        (["--data-dir", data, "--classes", "top,left,bird", "--premature-schedule", "halfway"],
         "'halfway' is not one of 'compressed', 'early_stop'"),
        (["--data-dir", data, "--classes", "top,left,bird", "--image-size", "4"],
         "--image-size must be in [8, 1024] pixels, got 4"),
        (["--data-dir", data, "--classes", "top,left,bird", "--label-studio", "http://127.0.0.1:9", "--api-key", "k",
          "--document-root", data], "must lie strictly below the Label Studio document root"),
    ]
    for args, message in cases:
        result = invoke("label", "init", run_dir, *TINY, *args)
        assert result.exit_code == 2 and message in result.output, (message, result.output)
        assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1, result.output
        assert not run_dir.exists()
    classes_file = tmp_path / "classes.txt"
    classes_file.write_text("# the classes\ntop\nleft\n\nbird\n")
    assert invoke("label", "init", run_dir, "--data-dir", data, "--classes-file", classes_file, *TINY,
                  "--premature-schedule", "early_stop").exit_code == 0
    assert '"premature_schedule": "early_stop"' in (run_dir / "project.json").read_text()  # the paper's schedule, kept
    again = invoke("label", "init", run_dir, "--data-dir", data, "--classes", "top,left", *TINY)
    assert again.exit_code == 2 and "already holds a labelling run" in again.output
    for command in ("sync", "status", "export"):
        result = invoke("label", command, tmp_path / "nothing")
        assert result.exit_code == 2 and "is not a labelling run" in result.output


def test_a_second_command_on_a_busy_run_stops_with_one_line(run, tmp_path) -> None:
    from inas_plugins.labelling.project import locked

    run_dir, _ = run
    answered = label_batch(run_dir, tmp_path)
    with locked(run_dir):  # as if a sync were running in another terminal
        for args in (("import", run_dir, answered), ("sync", run_dir, "-q")):
            result = invoke("label", *args)
            assert result.exit_code == 2 and "another `inas label` command is working on" in result.output
    assert "imported 8 new" in invoke("label", "import", run_dir, answered).output


def test_the_label_studio_key_comes_from_the_option_or_its_environment_variable(tmp_path, monkeypatch) -> None:
    data = make_pool(tmp_path / "data", n=6, test=1)
    args = ["label", "init", tmp_path / "run", "--data-dir", data, "--classes", "top,left", *TINY,
            "--label-studio", "http://127.0.0.1:9", "--document-root", data]
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    result = invoke(*args)
    assert result.exit_code == 2 and "needs an API key: pass --api-key or set LABEL_STUDIO_API_KEY" in result.output
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "k")  # read by the option itself: past the key check, to the next one
    result = invoke(*args)
    assert result.exit_code == 2 and "must lie strictly below the Label Studio document root" in result.output
    assert not (tmp_path / "run").exists()
