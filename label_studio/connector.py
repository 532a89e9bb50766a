"""Push a labelling batch to Label Studio as a project, and pull its finished annotations back.

push
    The collection server builds the tasks (one per pair, in rank order: both images by signed URL,
    the chosen branch's predictions as pre-annotations, the inconsistency score in ``data.score``,
    ``meta.score`` and the rank in ``data.rank``); the project is found by the marker
    ``msmine-batch: <id>`` in its description (or created, with the server's labelling config and
    sequential sampling, so labellers get the highest-scoring pairs first). Pairs already in the
    project (``data.upload_id``) are skipped, so a re-run adds only what is new; tasks whose image
    URLs expire within a day get fresh ones.
pull
    Label Studio's JSON export of the finished tasks goes, checked to belong to the batch, to the
    collection server's label import (``format=label-studio``): boxes, polygons and brushes drawn on
    the visible image become visible labels, those on the thermal image infrared labels. The import is
    all or nothing and replaces a pair's labels, so a re-run changes nothing.

Bad input -- Label Studio down or refusing the token, a project of another batch, tasks for pairs the
server does not hold -- is one :class:`~msmine.errors.UserError` line, raised before anything is
written to either server.
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass

from msmine.client import ServerClient
from msmine.errors import UserError
from msmine.label_studio.api import LabelStudio, LabelStudioError

log = logging.getLogger(__name__)

MARKER = "msmine-batch: {batch_id}"
_MARKER_RE = re.compile(r"msmine-batch: ([0-9a-f]{16})")
BATCH_RE = re.compile(r"^[0-9a-f]{16}$")
IMAGES = ("visible", "thermal")
REFRESH_BEFORE_S = 86400  # push renews image URLs that expire within a day
IMPORT_CHUNK = 500


@dataclass(frozen=True)
class PushResult:
    project_id: int
    project_url: str
    created_project: bool
    added: int  # tasks imported now
    skipped: int  # pairs already in the project
    refreshed: int  # existing tasks given fresh image URLs
    predictions: int  # pre-annotation regions in the added tasks
    expires_at: int  # when the new image URLs stop working (unix seconds)


@dataclass(frozen=True)
class PullResult:
    project_id: int
    finished: int  # tasks with a finished annotation
    pairs_labelled: int  # pairs whose labels the server stored
    label_sets: int
    unfinished: int  # tasks of the project without a finished annotation


def _check_batch_id(batch_id: str) -> str:
    if not BATCH_RE.match(batch_id or ""):
        raise UserError(f"--batch must be a batch id (16 hex digits, from POST /api/v1/batches), got {batch_id!r}")
    return batch_id


def project_batch(project: dict) -> str | None:
    """The batch a project was made for (its description's marker), None for a project not made by push."""
    found = _MARKER_RE.search(str(project.get("description") or ""))
    return found.group(1) if found else None


def find_project(ls: LabelStudio, batch_id: str, project_id: int | None) -> dict | None:
    """``project_id``'s project, checked to be this batch's; else the project whose marker names the batch."""
    if project_id is not None:
        try:
            project = ls.project(project_id)
        except LabelStudioError as exc:
            if exc.status == 404:
                raise UserError(f"Label Studio has no project {project_id} (or the token may not see it)") from None
            raise
        theirs = project_batch(project)
        if theirs != batch_id:
            what = f"batch {theirs}" if theirs else "no msmine batch"
            raise UserError(f"Label Studio project {project_id} ({project.get('title')!r}) holds {what}, not batch "
                            f"{batch_id}; nothing was changed")
        return project
    mine = [p for p in ls.projects() if project_batch(p) == batch_id]
    if len(mine) > 1:
        raise UserError(f"{len(mine)} Label Studio projects hold batch {batch_id} (ids "
                        f"{', '.join(str(p['id']) for p in mine)}); name one with --project")
    return mine[0] if mine else None


def _task_batch_problems(tasks: list[dict], batch_id: str, project_id: int) -> None:
    for t in tasks:
        data = t.get("data") if isinstance(t.get("data"), dict) else {}
        theirs = data.get("batch_id")
        if theirs != batch_id:
            raise UserError(f"Label Studio project {project_id} holds task {t.get('id')} of "
                            f"{'batch ' + str(theirs) if theirs else 'no msmine batch'}, not batch {batch_id}; "
                            "nothing was changed")


def _expiry(url: str) -> int | None:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(str(url)).query)
    try:
        return int(query["exp"][0])
    except (KeyError, ValueError, IndexError):
        return None


def _absolute(base: str, path: str) -> str:
    return path if path.startswith(("http://", "https://")) else base.rstrip("/") + path


def push(server: ServerClient, ls: LabelStudio, batch_id: str, *, branch: str = "fused", masks: str = "polygon",
         project_id: int | None = None, title: str | None = None, image_base_url: str | None = None,
         expires_in_s: int = 7 * 86400) -> PushResult:
    """Put the batch's pairs into a Label Studio project (created when there is none); idempotent."""
    _check_batch_id(batch_id)
    ls.whoami()  # token checked before anything is built or written
    bundle = server.label_studio_tasks(batch_id, branch=branch, masks=masks, expires_in_s=expires_in_s)
    base = (image_base_url or server.base_url).rstrip("/")
    tasks = bundle["tasks"]
    for t in tasks:
        for image in IMAGES:
            t["data"][image] = _absolute(base, t["data"][image])
        t["meta"] = {"score": t["data"].get("score"), "rank": t["data"].get("rank"), "batch_id": batch_id}
    project = find_project(ls, batch_id, project_id)
    created = project is None
    existing: dict[str, dict] = {}
    if project is None:
        description = (f"msmine labelling batch, {len(tasks)} pairs ranked by inconsistency score; pre-annotations: "
                       f"the {bundle['branch']} branch. {MARKER.format(batch_id=batch_id)}")
        project = ls.create_project(title or f"msmine batch {batch_id}", description, bundle["config"])
        log.info("created Label Studio project %s for batch %s", project["id"], batch_id)
    else:
        present = ls.export(project["id"], all_tasks=True)
        _task_batch_problems(present, batch_id, project["id"])
        existing = {t["data"]["upload_id"]: t for t in present if isinstance(t["data"].get("upload_id"), str)}
    pid = int(project["id"])
    new = [t for t in tasks if t["data"]["upload_id"] not in existing]
    for start in range(0, len(new), IMPORT_CHUNK):
        ls.import_tasks(pid, new[start:start + IMPORT_CHUNK])
    refreshed = 0
    fresh = {t["data"]["upload_id"]: t["data"] for t in tasks}
    soon = time.time() + REFRESH_BEFORE_S
    for uid, old in existing.items():
        if uid not in fresh:
            continue
        expiries = [_expiry(old["data"].get(image, "")) for image in IMAGES]
        if any(e is None or e < soon for e in expiries):
            ls.update_task(old["id"], {**old["data"], **{image: fresh[uid][image] for image in IMAGES}})
            refreshed += 1
    versions = Counter(p.get("model_version") for t in new for p in t.get("predictions") or [])
    if created and versions:  # show these predictions to labellers as pre-annotations
        try:
            ls.update_project(pid, {"model_version": versions.most_common(1)[0][0]})
        except LabelStudioError as exc:  # cosmetic: the predictions are there either way
            log.warning("could not select the predictions' model version in project %s: %s", pid, exc)
    regions = sum(len(p.get("result") or []) for t in new for p in t.get("predictions") or [])
    log.info("batch %s -> Label Studio project %s: %d added, %d already there, %d refreshed", batch_id, pid,
             len(new), len(existing), refreshed)
    return PushResult(project_id=pid, project_url=f"{ls.url}/projects/{pid}/data", created_project=created,
                      added=len(new), skipped=len(tasks) - len(new), refreshed=refreshed, predictions=regions,
                      expires_at=int(bundle["expires_at"]))


def pull(server: ServerClient, ls: LabelStudio, batch_id: str, *, project_id: int | None = None) -> PullResult:
    """Import the project's finished annotations as labels on the collection server; idempotent."""
    _check_batch_id(batch_id)
    project = find_project(ls, batch_id, project_id)
    if project is None:
        raise UserError(f"no Label Studio project holds batch {batch_id} (run `msmine label-studio push` first, or "
                        "name it with --project)")
    pid = int(project["id"])
    finished = ls.export(pid, all_tasks=False)
    _task_batch_problems(finished, batch_id, pid)
    total = int(project.get("task_number") or 0)
    if not finished:
        log.info("project %s has no finished annotation yet", pid)
        return PullResult(pid, 0, 0, 0, total)
    body = json.dumps(finished).encode()
    got = server.post_labels(body, f"label-studio-project-{pid}.json", fmt="label-studio", modality="auto")
    log.info("Label Studio project %s -> %d pairs labelled (%d label sets)", pid, got.pairs_labelled, got.label_sets)
    return PullResult(pid, len(finished), got.pairs_labelled, got.label_sets, max(0, total - len(finished)))
