"""``inas label`` against a real Label Studio server (SQLite, loopback port, local-file serving).

The server is the real ``label-studio`` package, but it is never installed beside the project
(about 1 GB of Django and friends): the session fixture finds or creates its own virtual
environment in ``~/.cache/inas-plugins/label-studio-venv`` (``pip install label-studio==1.23.*``,
about 3.5 minutes the first time; ``.ci/run`` prepares it in parallel with the project's install),
migrates one data directory once (about 2 minutes, kept next to the venv per Label Studio version),
and every test starts its own server from a copy of it (about 10 s). Tests annotate through the
server's REST API the way the web interface does (submit, skip, update), then run ``inas label sync``.
They skip, saying why, only where the server cannot be installed or started.

``INAS_LABEL_SCREENSHOT=docs/label-studio-labelling.png`` makes the screenshot test also write the
picture the README shows; with ``INAS_LABEL_SCREENSHOT_PHOTOS=~/data/cifar10`` (any folder with
``train/<class>/`` photos) the pool is made of those photos, cats and dogs, instead of drawn patterns:

    INAS_LABEL_SCREENSHOT=docs/label-studio-labelling.png INAS_LABEL_SCREENSHOT_PHOTOS=~/data/cifar10 \
        pytest tests/test_label_studio.py -k screenshot
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from chromium import capture, find_chromium
from test_label_files import CLASSES, invoke, make_pool, status, truth

pytestmark = pytest.mark.slow

LS_REQUIREMENT = "label-studio==1.23.*"
CACHE = Path(os.environ.get("INAS_LABEL_STUDIO_CACHE", Path.home() / ".cache" / "inas-plugins"))
VENV = CACHE / "label-studio-venv"
USER, PASSWORD = "tester@example.com", "inas-label-test"
TOKEN = "0123456789abcdef0123456789abcdef01234567"
TINY = ["--initial", "6", "--query-size", "4", "--budget", "20", "--epochs", "2", "--epoch-size", "64",
        "--base-width", "4", "--max-blocks", "2", "--max-stacks", "2", "--device", "cpu"]
# Label Studio reads these plain names as its own settings; they must not leak in from the caller.
LEAKY = ("USERNAME", "PASSWORD", "HOST", "PORT")


def unavailable(reason: str) -> None:
    """Skip, saying why; CI (``.ci/run`` sets INAS_LABEL_STUDIO_REQUIRED=1) fails instead."""
    if os.environ.get("INAS_LABEL_STUDIO_REQUIRED"):
        pytest.fail(reason)
    pytest.skip(reason)


@contextmanager
def _locked(name: str):
    """An exclusive lock, so two test sessions on one machine do not build the same venv at once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _server_env(document_root: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in LEAKY}
    env.update(LATEST_VERSION_CHECK="false", LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
               LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(document_root), PYTHONUNBUFFERED="1")
    return env


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def ensure_venv() -> Path:
    """The label-studio executable of the cached venv, installing it on first use."""
    executable = VENV / "bin" / "label-studio"
    marker = VENV / ".inas-complete"
    with _locked("venv"):
        if not marker.exists():
            if not (VENV / "bin" / "python").exists():
                made = subprocess.run([sys.executable, "-m", "venv", str(VENV)], capture_output=True, text=True)
                if made.returncode != 0:
                    unavailable(f"cannot create a venv for the Label Studio server in {VENV}: {_tail(made.stderr)}")
            done = subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", LS_REQUIREMENT],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                unavailable(f"Label Studio server cannot be installed into {VENV}: {_tail(done.stderr)}")
            marker.write_text(LS_REQUIREMENT + "\n")
    return executable


def ensure_template(executable: Path) -> Path:
    """A migrated data directory with one user whose legacy API token is TOKEN (made once per version)."""
    version = subprocess.run([str(VENV / "bin" / "python"), "-c", "import label_studio; print(label_studio.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    template = CACHE / f"label-studio-data-{version}"
    with _locked("template"):
        if not (template / ".inas-complete").exists():
            building = CACHE / f".label-studio-data-{version}.building"
            shutil.rmtree(building, ignore_errors=True)
            shutil.rmtree(template, ignore_errors=True)
            done = subprocess.run([str(executable), "init", "--data-dir", str(building), "--username", USER,
                                   "--password", PASSWORD, "--user-token", TOKEN, "--enable-legacy-api-token"],
                                  capture_output=True, text=True, env=_server_env(CACHE), cwd=CACHE, timeout=900)
            if done.returncode != 0 or not (building / "label_studio.sqlite3").exists():
                unavailable(f"Label Studio data directory cannot be initialised: {_tail(done.stdout + done.stderr)}")
            (building / ".inas-complete").write_text(version + "\n")
            building.rename(template)
    return template


@pytest.fixture(scope="session")
def label_studio_install() -> tuple[Path, Path]:
    executable = ensure_venv()
    return executable, ensure_template(executable)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """One Label Studio server on a copy of the template, serving local files below ``root``."""

    def __init__(self, executable: Path, template: Path, root: Path) -> None:
        self.executable, self.root = executable, root
        self.data = root / "label-studio-data"
        shutil.copytree(template, self.data)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = root / "label-studio.log"

    def start(self, timeout: float = 120.0) -> None:
        log = open(self.log, "a")
        self.process = subprocess.Popen(
            [str(self.executable), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(self.data)], stdout=log, stderr=subprocess.STDOUT, env=_server_env(self.root),
            cwd=self.root, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                unavailable(f"Label Studio server exited at start: {_tail(self.log.read_text())}")
            try:
                # Our token answering on our port also proves the server did not move to another port.
                if self.api().get("/api/current-user/whoami").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        unavailable(f"Label Studio server did not answer on {self.url} within {timeout:.0f} s: {_tail(self.log.read_text())}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Token {TOKEN}"}, timeout=30)


@pytest.fixture
def server(label_studio_install, tmp_path):
    executable, template = label_studio_install
    running = Server(executable, template, tmp_path)
    running.start()
    yield running
    running.stop()


# -- annotating as the web interface does ----------------------------------------------------------

def tasks(server: Server, project: int, **params) -> list[dict]:
    answer = server.api().get("/api/tasks/", params={"project": project, "fields": "all", "page_size": 1000, **params})
    answer.raise_for_status()
    return answer.json()["tasks"]


def choice(name: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [name]}}]


def submit(server: Server, task: dict, result: list[dict], *, skip: bool = False) -> dict:
    """What the labelling page posts on Submit (or Skip): the result, timing, and the prediction it started from."""
    prediction = (task.get("predictions") or [{}])[0].get("id")
    body = {"result": [] if skip else result, "was_cancelled": skip, "ground_truth": False, "lead_time": 2.5,
            "project": task["project"], "draft_id": 0, "parent_prediction": prediction, "parent_annotation": None,
            "started_at": "2026-01-01T12:00:00.000Z"}
    answer = server.api().post(f"/api/tasks/{task['id']}/annotations/", params={"project": task["project"]}, json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def update(server: Server, annotation: int, result: list[dict]) -> None:
    """What the labelling page sends on Update after a person changes an answer."""
    answer = server.api().patch(f"/api/annotations/{annotation}/", json={"result": result, "lead_time": 1.0})
    assert answer.status_code == 200, answer.text


def label_open_tasks(server: Server, project: int, classes: tuple[str, ...] = CLASSES) -> int:
    done = 0
    for task in tasks(server, project):
        if not task["annotations"]:
            submit(server, task, choice(truth_in(classes, task["data"]["path"])))
            done += 1
    return done


def truth_in(classes: tuple[str, ...], path: str) -> str:
    """The class of pool image ``img<NNN>`` (NNN % 2), as make_pool and photo_pool lay them out."""
    return classes[int(re.search(r"img(\d+)", path).group(1)) % 2]


def photo_pool(root: Path, photos: Path, classes: tuple[str, ...], n: int = 30, test: int = 4) -> Path:
    """make_pool's layout from real photos: ``photos/train/<class>/`` files, alternating between ``classes``."""
    sources = {name: sorted((photos / "train" / name).iterdir()) for name in classes}
    for i in range(n):
        path = root / "unlabelled" / f"sub{i % 3}" / f"img{i:03d}{sources[classes[i % 2]][i // 2].suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sources[classes[i % 2]][i // 2], path)
    for name in classes:
        for i in range(test):
            path = root / "test" / name / f"t{i}{sources[name][n + i].suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sources[name][n + i], path)
    return root


def init_run(server: Server, tmp_path: Path, *extra: str, data: Path | None = None,
             classes: tuple[str, ...] = CLASSES) -> tuple[Path, Path, int]:
    data = data or make_pool(server.root / "data", n=30, test=4)
    run_dir = tmp_path / "run"
    result = invoke("label", "init", run_dir, "--data-dir", data, "--classes", ",".join(classes),
                    "--label-studio", server.url, "--api-key", TOKEN, *TINY, *extra)
    assert result.exit_code == 0, result.output
    project = json.loads((run_dir / "project.json").read_text())["studio"]["project_id"]
    return run_dir, data, project


def sync(run_dir: Path, *extra: str):
    return invoke("label", "sync", run_dir, "--api-key", TOKEN, "--quiet", *extra)


# -- the tests ------------------------------------------------------------------------------------

def test_three_rounds_in_label_studio(server, tmp_path) -> None:
    run_dir, data, project = init_run(server, tmp_path)
    first = tasks(server, project)
    assert len(first) == 6 and all(not task["predictions"] for task in first)
    image = server.api().get(first[0]["data"]["image"])  # the server serves the pool from disk
    assert image.status_code == 200 and image.content == (data / first[0]["data"]["path"]).read_bytes()
    for round_index in range(3):
        assert label_open_tasks(server, project) == (6 if round_index == 0 else 4)
        result = sync(run_dir)
        assert result.exit_code == 0, result.output
        assert f"round {round_index}: " in result.output and "posted batch" in result.output
        again = sync(run_dir)
        assert again.exit_code == 0 and "pulled 0 new answer(s)" in again.output
        assert "still need an answer" in again.output
    info = status(run_dir)
    assert info["rounds"] == 3 and info["labelled"] == 6 + 4 + 4 and info["conflicts"] == 0
    labels = list(csv.DictReader(open(run_dir / "labels.csv")))
    assert len(labels) == 14 and all(row["class"] == truth(row["path"]) for row in labels)
    assert all(row["source"] == "label-studio" and row["ref"].startswith("annotation:") for row in labels)
    # The open batch carries the model's guess as a prediction and the query score as a task field.
    batch = json.loads((run_dir / "state.json").read_text())["batch"]
    by_path = {item["path"]: item for item in batch["items"]}
    open_tasks = [task for task in tasks(server, project) if not task["annotations"]]
    assert sorted(task["data"]["path"] for task in open_tasks) == sorted(by_path)
    for task in open_tasks:
        item = by_path[task["data"]["path"]]
        prediction, = task["predictions"]
        assert prediction["result"] == choice(item["predicted"])
        assert prediction["score"] == pytest.approx(item["confidence"])
        assert prediction["model_version"].startswith("round 2 A(")
        assert task["data"]["query_score"] == pytest.approx(item["query_score"])
        assert task["data"]["query_score"] == pytest.approx(1 - item["confidence"], abs=1e-5)  # softmax response
    # Annotators can sort the Data Manager by the query score, most wanted first.
    ordering = json.dumps({"ordering": ["-tasks:data.query_score"]})
    ranked = [task["data"]["query_score"] for task in tasks(server, project, query=ordering)
              if not task["annotations"]]
    assert ranked == sorted(ranked, reverse=True)
    assert len({task["data"]["path"] for task in tasks(server, project)}) == len(tasks(server, project))  # no duplicates


def test_bad_answers_skips_and_changed_labels(server, tmp_path) -> None:
    run_dir, _, project = init_run(server, tmp_path)
    open_tasks = tasks(server, project)
    bird = submit(server, open_tasks[0], choice("bird"))
    submit(server, open_tasks[1], [], skip=True)
    first = submit(server, open_tasks[2], choice(truth(open_tasks[2]["data"]["path"])))
    result = sync(run_dir)
    assert result.exit_code == 1
    assert (f"error: task {open_tasks[0]['id']} ({open_tasks[0]['data']['path']}): class 'bird' is not one of top, left"
            in result.output)
    assert "4 of the 6 images of batch 0 still need an answer" in result.output  # 6 - one label - one skip
    info = status(run_dir)
    assert (info["labelled"], info["skipped"], info["pending"]) == (1, 1, 4)
    assert open_tasks[1]["data"]["path"] not in {row["path"] for row in
                                                 csv.DictReader(invoke("label", "export", run_dir, "--what", "labels")
                                                                .output.splitlines()) if row["class"]}
    # A person changes an answer in Label Studio: the latest wins, the old row stays, status counts a conflict.
    changed = "top" if truth(open_tasks[2]["data"]["path"]) == "left" else "left"
    update(server, first["id"], choice(changed))
    update(server, bird["id"], choice("top"))
    result = sync(run_dir)
    assert result.exit_code == 0 and "pulled 2 new answer(s)" in result.output, result.output
    info = status(run_dir)
    assert info["conflicts"] == 1 and info["labelled"] == 2
    rows = list(csv.DictReader(open(run_dir / "labels.csv")))
    assert [row["class"] for row in rows if row["path"] == open_tasks[2]["data"]["path"]] == [truth(open_tasks[2]["data"]["path"]), changed]
    assert sync(run_dir).output.count("pulled 0 new answer(s)") == 1
    # The rest of the batch, then a round: the skipped image is neither trained on nor asked again.
    label_open_tasks(server, project)
    result = sync(run_dir)
    assert result.exit_code == 0 and "round 0: " in result.output, result.output
    assert status(run_dir)["history"][0]["labelled"] == 5
    batch = [item["path"] for item in json.loads((run_dir / "state.json").read_text())["batch"]["items"]]
    assert open_tasks[1]["data"]["path"] not in batch


def test_server_down_or_wrong_key_loses_nothing_and_the_next_sync_retries(server, tmp_path) -> None:
    run_dir, _, project = init_run(server, tmp_path)
    label_open_tasks(server, project)
    files = {name: (run_dir / name).read_bytes() for name in ("labels.csv", "state.json", "project.json")}
    wrong = invoke("label", "sync", run_dir, "--api-key", "not-the-token", "-q")
    assert wrong.exit_code == 2 and len(wrong.output.strip().splitlines()) == 1
    assert f"Label Studio at {server.url} refused the API key (401)" in wrong.output
    server.stop()
    down = sync(run_dir)
    assert down.exit_code == 2 and f"cannot reach Label Studio at {server.url}" in down.output
    assert "after 3 attempts; nothing was lost" in down.output and len(down.output.strip().splitlines()) == 1
    assert {name: (run_dir / name).read_bytes() for name in files} == files
    server.start()
    back = sync(run_dir)
    assert back.exit_code == 0 and "pulled 6 new answer(s)" in back.output and "round 0: " in back.output
    assert status(run_dir)["labelled"] == 6


def _login_cookies(server: Server) -> dict[str, str]:
    """Log in through the login form, as a person would, and return the session cookies."""
    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=30) as browser:
        browser.get("/user/login/")
        token = browser.cookies["csrftoken"]
        answer = browser.post("/user/login/", data={"email": USER, "password": PASSWORD, "csrfmiddlewaretoken": token},
                              headers={"Referer": f"{server.url}/user/login/"})
        assert answer.status_code in (302, 303), answer.text[:300]
        return dict(browser.cookies)


def screenshot(server: Server, path: str, out: Path, ready: str, probe: str = "null", width: int = 1400,
               height: int = 900) -> tuple[str, object]:
    """Log in, open ``path``, wait until the JavaScript expression ``ready`` is true, save a PNG; return the
    URL and the value of the expression ``probe`` on the page as captured."""
    executable = find_chromium()
    if executable is None:
        pytest.skip("no headless browser installed (apt-get install -y chromium)")
    return capture(executable, server.root / "chromium-profile", server.url + path, out, ready, probe=probe,
                   width=width, height=height, cookies=_login_cookies(server))


# What the labelling page shows, read from the page itself: the images drawn on it (largest first,
# with the RGB pixels of the largest as the browser decoded it) and the class choices that are ticked.
PAGE_PROBE = """(() => {
  const images = [...document.querySelectorAll('img')].filter(i => i.complete && i.naturalWidth > 0)
    .map(i => ({element: i, box: i.getBoundingClientRect()}))
    .map(({element, box}) => ({element, src: element.currentSrc || element.src, width: element.naturalWidth,
                               height: element.naturalHeight, area: box.width * box.height}))
    .sort((a, b) => b.area - a.area);
  let pixels = null;
  if (images.length) {
    const canvas = document.createElement('canvas');
    canvas.width = images[0].width;
    canvas.height = images[0].height;
    const context = canvas.getContext('2d');
    context.drawImage(images[0].element, 0, 0);
    pixels = Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data).filter((_, k) => k % 4 !== 3);
  }
  const ticked = [...document.querySelectorAll('input[type=checkbox], input[type=radio]')].filter(i => i.checked)
    .map(i => (i.closest('label') || i.parentElement).textContent.trim());
  return {images: images.map(({element, ...rest}) => rest), pixels, ticked};
})()"""


def rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64).ravel()


def test_screenshot_of_the_labelling_page(server, tmp_path) -> None:
    photos = os.environ.get("INAS_LABEL_SCREENSHOT_PHOTOS")
    classes = ("cat", "dog") if photos else CLASSES
    data = photo_pool(server.root / "data", Path(photos).expanduser(), classes) if photos else None
    run_dir, data, project = init_run(server, tmp_path, data=data, classes=classes)
    label_open_tasks(server, project, classes)
    assert sync(run_dir).exit_code == 0
    task = max((t for t in tasks(server, project) if not t["annotations"]), key=lambda t: t["data"]["query_score"])
    predicted = task["predictions"][0]["result"][0]["value"]["choices"]
    assert predicted == [task["data"]["predicted"]] and predicted[0] in classes
    out = tmp_path / "labelling.png"
    # Ready: the image is shown with the class choices and the Submit button of the labelling page.
    ready = ("document.querySelectorAll('img').length > 0 && "
             "[...document.querySelectorAll('button')].some(b => b.textContent.trim() === 'Submit') && "
             f"[...document.querySelectorAll('label')].some(l => l.textContent.startsWith('{classes[1]}'))")
    where, page = screenshot(server, f"/projects/{project}/data?task={task['id']}", out, ready, PAGE_PROBE)
    assert "/user/login" not in where and f"/projects/{project}/data" in where
    # The large image on the page is this task's file, loaded in full: its pixels (decoded by the browser,
    # so JPEGs within rounding) are those of the task's file and of no other image of the pool.
    shown = page["images"][0]
    with Image.open(data / task["data"]["path"]) as original:
        assert (shown["width"], shown["height"]) == original.size, shown
    assert shown["area"] > 100 * max(image["area"] for image in page["images"][1:] or [{"area": 1}])
    pixels = np.asarray(page["pixels"], dtype=np.float64)
    distance = {path.relative_to(data).as_posix(): np.abs(rgb(path) - pixels).mean() if rgb(path).shape == pixels.shape
                else np.inf for path in (data / "unlabelled").rglob("img*")}
    assert min(distance, key=distance.get) == task["data"]["path"] and distance[task["data"]["path"]] < 3, distance
    # The model's class comes pre-selected, and only it.
    ticked = [re.sub(r"\[\d+\]$", "", label) for label in page["ticked"]]  # "top[1]": the class and its hotkey
    assert [label for label in ticked if label in classes] == predicted, page["ticked"]
    png = out.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1400, 900)
    target = os.environ.get("INAS_LABEL_SCREENSHOT")
    if target:
        shutil.copyfile(out, target)
