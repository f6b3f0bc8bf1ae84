"""The Label Studio side of a labelling run, through ``label-studio-sdk`` (the ``inas-plugins[label]`` extra).

What the loop needs from a Label Studio server, and nothing more:

* a project with an image-classification labelling config (one ``Choices`` tag, one choice per class);
* a local-files import storage over the data directory, so the server serves the images from disk
  (the server runs with ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and
  ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` set to a folder the data directory lies strictly below;
  tasks point at ``/data/local-files/?d=<path below that root>``);
* tasks for a batch, each carrying the image, its path in the data directory, the round, its query
  score (a task field, so annotators can sort the Data Manager by it) and the model's class and
  probability as a prediction (shown as a pre-annotation). Posting skips images that already have a
  task, so posting a batch again after a failure creates no duplicates;
* the annotations: a submitted choice becomes a label, a skipped task (``was_cancelled``) a skip,
  and an annotation naming a class that is not in the list (an edited labelling config, an API
  client) is reported, one line each, and not stored.

Network trouble is retried with tenacity (connection errors, timeouts, 429 and 5xx answers, with
exponential back-off); what still fails becomes a :class:`StudioError` whose one line names the
URL, after which the caller has changed nothing and the next sync tries again. A refused API key
(401/403) is not retried.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, TypeVar
from xml.sax.saxutils import quoteattr

from ..choices import LABEL_STUDIO_API_KEY_ENV
from .project import Batch
from .store import Answer
from ..error_text import first_line

T = TypeVar("T")

FROM_NAME, TO_NAME = "label", "image"
API_KEY_ENV = LABEL_STUDIO_API_KEY_ENV


class StudioError(RuntimeError):
    """Label Studio could not be reached or refused a request; the message is one line with the URL."""


def labelling_config(classes: Iterable[str]) -> str:
    """The Label Studio labelling config: the image, and one required single choice per class."""
    choices = "\n".join(f"    <Choice value={quoteattr(name)}/>" for name in classes)
    return (f'<View>\n  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
            f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInLine="true" required="true">\n'
            f"{choices}\n  </Choices>\n</View>\n")


def local_file_url(document_root: str, data_dir: str, path: str) -> str:
    """The URL under which the server serves ``data_dir/path`` (a local-files storage must cover it)."""
    from urllib.parse import quote

    below = os.path.relpath(os.path.join(data_dir, path), document_root).replace(os.sep, "/")
    return f"/data/local-files/?d={quote(below)}"


def check_document_root(document_root: str, data_dir: str) -> None:
    """The data directory must lie strictly below the server's document root (Label Studio's rule)."""
    root, data = os.path.abspath(document_root), os.path.abspath(data_dir)
    if os.path.commonpath([root, data]) != root or root == data:
        raise StudioError(f"the data directory {data} must lie strictly below the Label Studio document root "
                          f"{root} (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT); pass --document-root with a parent folder")


@dataclass
class Pulled:
    """The answers found on the server, and one line per annotation that could not be used."""

    answers: list[Answer]
    problems: list[str]
    tasks: int


class Studio:
    """A Label Studio server at ``url`` used with ``api_key``; every call is retried, then one line."""

    def __init__(self, url: str, api_key: Optional[str], *, attempts: int = 3, wait: float = 0.5,
                 timeout: float = 30.0) -> None:
        if not api_key:
            raise StudioError(f"Label Studio at {url} needs an API key: pass --api-key or set {API_KEY_ENV}")
        try:
            from label_studio_sdk import LabelStudio
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise StudioError("Label Studio support needs the label extra: pip install 'inas-plugins[label]'") from None
        self.url = url.rstrip("/")
        self.attempts = attempts
        self.wait = wait
        self.client = LabelStudio(base_url=self.url, api_key=api_key, timeout=timeout, max_retries=0)

    # -- calls ----------------------------------------------------------------------------------

    def call(self, what: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` with retries on transient failures; StudioError otherwise."""
        import tenacity

        retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(self.attempts),
                                     wait=tenacity.wait_exponential(multiplier=self.wait, max=10),
                                     retry=tenacity.retry_if_exception(_transient), reraise=True)
        try:
            return retrying(function, *args, **kwargs)
        except Exception as error:
            raise StudioError(self._describe(what, error)) from None

    def _describe(self, what: str, error: Exception) -> str:
        import httpx

        status = getattr(error, "status_code", None)
        if status in (401, 403):
            return (f"Label Studio at {self.url} refused the API key ({status}) while trying to {what}; check "
                    f"--api-key / {API_KEY_ENV} (the token of Account & Settings); nothing was changed")
        if isinstance(error, httpx.TransportError):
            return (f"cannot reach Label Studio at {self.url} to {what} ({type(error).__name__}: "
                    f"{first_line(error, limit=300)}) after {self.attempts} attempts; nothing was lost, sync again when it is up")
        if status is not None:
            body = first_line(getattr(error, "body", ""), limit=300)
            return f"Label Studio at {self.url} answered {status} when trying to {what}: {body}"
        return f"Label Studio at {self.url}: cannot {what}: {type(error).__name__}: {first_line(error, limit=300)}"

    # -- the project ----------------------------------------------------------------------------

    def check(self) -> None:
        """One cheap authenticated request: fails early on a wrong URL or key."""
        self.call("check the API key", lambda: self.client.users.whoami())

    def create_project(self, title: str, classes: list[str], data_dir: str, description: str = "") -> tuple[int, int]:
        """A new project for ``classes`` and its local-files storage over ``data_dir``: (project id, storage id)."""
        project = self.call("create a project", self.client.projects.create, title=title, description=description,
                            label_config=labelling_config(classes), show_skip_button=True)
        storage = self.call("add a local-files storage", self.client.import_storage.local.create,
                            project=project.id, path=os.path.abspath(data_dir), title="inas label images",
                            use_blob_urls=False)
        return int(project.id), int(storage.id)

    def tasks(self, project_id: int) -> list[dict]:
        """Every task of the project with its data and annotations, as plain dicts."""
        def fetch() -> list[dict]:
            pager = self.client.tasks.list(project=project_id, fields="all", page_size=500)
            return [{"id": task.id, "data": dict(task.data or {}), "annotations": list(task.annotations or [])}
                    for task in pager]
        return self.call(f"read the tasks of project {project_id}", fetch)

    def post_batch(self, project_id: int, batch: Batch, *, document_root: str, data_dir: str) -> int:
        """Create the batch's tasks that do not exist yet; return how many were created."""
        existing = {task["data"].get("path") for task in self.tasks(project_id)}
        tasks = []
        for item in batch.items:
            if item.path in existing:
                continue
            task: dict[str, Any] = {"data": {"image": local_file_url(document_root, data_dir, item.path),
                                             "path": item.path, "round": batch.round,
                                             "query_score": item.query_score if item.query_score is not None else 0.0}}
            if item.predicted is not None:
                task["data"]["predicted"] = item.predicted
                task["predictions"] = [{"model_version": batch.model_version, "score": item.confidence,
                                        "result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                                                    "value": {"choices": [item.predicted]}}]}]
            tasks.append(task)
        if tasks:
            self.call(f"post {len(tasks)} tasks to project {project_id}", self.client.projects.import_tasks,
                      id=project_id, request=tasks)
        return len(tasks)

    def pull(self, project_id: int, classes: list[str]) -> Pulled:
        """The project's annotations as answers (``ref`` = ``annotation:<id>``, time = last update)."""
        answers, problems = [], []
        tasks = self.tasks(project_id)
        for task in tasks:
            path = task["data"].get("path")
            if not path:
                problems.append(f"task {task['id']} has no 'path' field (not created by inas label); ignored")
                continue
            for annotation in task["annotations"]:
                try:
                    answer, problem = _answer(task["id"], path, annotation, classes)
                except ValueError as error:  # a path or time this project cannot store
                    answer, problem = None, f"task {task['id']} ({path}): {error}; not stored"
                if answer is not None:
                    answers.append(answer)
                if problem:
                    problems.append(problem)
        return Pulled(answers, problems, len(tasks))


def _answer(task_id: int, path: str, annotation: dict, classes: list[str]) -> tuple[Optional[Answer], str]:
    ref = f"annotation:{annotation.get('id')}"
    when = str(annotation.get("updated_at") or annotation.get("created_at") or "")
    if annotation.get("was_cancelled"):
        return Answer(path, "", "label-studio", ref, when), ""
    chosen = [choice for item in annotation.get("result") or [] if item.get("type") == "choices"
              for choice in (item.get("value") or {}).get("choices") or []]
    if len(chosen) != 1:
        return None, (f"task {task_id} ({path}): annotation {annotation.get('id')} has {len(chosen)} classes, "
                      f"expected one of {', '.join(classes)}; not stored")
    if chosen[0] not in classes:
        return None, (f"task {task_id} ({path}): class {chosen[0]!r} is not one of {', '.join(classes)}; "
                      "not stored (fix the annotation in Label Studio and sync again)")
    return Answer(path, chosen[0], "label-studio", ref, when), ""


def _transient(error: BaseException) -> bool:
    import httpx

    if isinstance(error, httpx.TransportError):
        return True
    status = getattr(error, "status_code", None)
    return isinstance(status, int) and (status == 429 or status >= 500)
