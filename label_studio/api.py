"""Label Studio's REST API, the few endpoints the connector uses (standard library only).

Documented endpoints (Label Studio 1.23, https://api.labelstud.io):

* ``GET  /api/current-user/whoami``                 who the token is (checks it before any change)
* ``GET  /api/projects?page=&page_size=``           projects, paged
* ``POST /api/projects``                            create (title, description, label_config)
* ``GET/PATCH /api/projects/<id>``                  one project
* ``POST /api/projects/<id>/import``                tasks (with ``predictions``) as a JSON list
* ``GET  /api/projects/<id>/export?exportType=JSON&download_all_tasks=``  tasks with annotations

Authentication: a legacy token is sent as ``Authorization: Token <key>``; a personal access token
(a JWT refresh token, Label Studio's default for new organisations) is first exchanged for an
access token at ``POST /api/token/refresh/`` and sent as ``Authorization: Bearer <access>``.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from msmine import __version__
from msmine.errors import UserError

log = logging.getLogger(__name__)

PAGE_SIZE = 100
MAX_PAGES = 1000  # 100,000 projects: far past any installation; bounds the walk
MAX_DETAIL = 240


class LabelStudioError(UserError):
    """Label Studio did not answer, or not as needed: one line naming the server and what to do."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib's signature
        return None  # a redirect (to a login page) is answered as itself; the token never follows it


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 3] + "..."


def _is_jwt(token: str) -> bool:
    parts = token.split(".")
    return len(parts) == 3 and token.startswith("eyJ") and all(parts)


class LabelStudio:
    """A Label Studio server. ``url`` like ``http://127.0.0.1:8080``; ``token`` its API key."""

    def __init__(self, url: str, token: str, timeout: float = 60.0) -> None:
        base = (url or "").strip().rstrip("/")
        parsed = urllib.parse.urlsplit(base)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise UserError(f"Label Studio URL must look like http://host:port, got {url!r}")
        if not token:
            raise UserError("a Label Studio API token is needed (--ls-token or $LABEL_STUDIO_API_KEY: Account & "
                            "Settings > Legacy Token or Personal Access Token)")
        self.url = base
        self.timeout = float(timeout)
        self._token = token.strip()
        self._auth: str | None = None if _is_jwt(self._token) else f"Token {self._token}"
        self._opener = urllib.request.build_opener(_NoRedirect())

    def __repr__(self) -> str:  # never the token
        return f"LabelStudio({self.url!r})"

    # plumbing -----------------------------------------------------------------------------------

    def _raw(self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None,
             auth: str | None = None) -> tuple[int, bytes]:
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("User-Agent", f"msmine/{__version__}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", auth)
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            try:
                payload = exc.read()
            except (OSError, http.client.HTTPException):
                payload = b""
            return exc.code, payload
        except urllib.error.URLError as exc:
            raise LabelStudioError(f"cannot reach Label Studio at {self.url}: {_one_line(exc.reason)} "
                                   "(is it running? --ls-url)") from None
        except (OSError, http.client.HTTPException) as exc:
            raise LabelStudioError(f"cannot reach Label Studio at {self.url}: {type(exc).__name__}: "
                                   f"{_one_line(exc)}") from None

    def _authorization(self) -> str:
        if self._auth is None:  # a personal access token: trade it for a short-lived access token
            status, payload = self._raw("POST", "/api/token/refresh/", {"refresh": self._token})
            access = None
            if status == 200:
                try:
                    access = json.loads(payload).get("access")
                except (ValueError, AttributeError):
                    access = None
            if not access:
                raise LabelStudioError(f"Label Studio at {self.url} refused the personal access token ({status}): "
                                       "give a valid --ls-token", status)
            self._auth = f"Bearer {access}"
        return self._auth

    def request(self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None,
                ok: tuple[int, ...] = (200, 201)) -> Any:
        """One call; the answer's JSON, or LabelStudioError (one line) for any other status."""
        status, payload = self._raw(method, path, body, query, self._authorization())
        if status in ok:
            try:
                return json.loads(payload or b"null")
            except ValueError:
                raise LabelStudioError(f"Label Studio {method} {path} answered {status} with no JSON: "
                                       f"{_one_line(payload[:120].decode('utf-8', 'replace'))}", status) from None
        detail = payload.decode("utf-8", "replace")
        try:
            got = json.loads(payload)
            if isinstance(got, dict):
                detail = str(got.get("detail") or got.get("validation_errors") or got)
        except ValueError:
            pass
        if status == 401:
            raise LabelStudioError(f"Label Studio at {self.url} refused the API token (401: {_one_line(detail)}); "
                                   "give a valid --ls-token / $LABEL_STUDIO_API_KEY", status)
        raise LabelStudioError(f"Label Studio {method} {path} answered {status}: {_one_line(detail)}", status)

    # endpoints ----------------------------------------------------------------------------------

    def whoami(self) -> dict:
        return self.request("GET", "/api/current-user/whoami")

    def projects(self) -> list[dict]:
        """Every project the token sees (paged, bounded)."""
        out: list[dict] = []
        for page in range(1, MAX_PAGES + 1):
            got = self.request("GET", "/api/projects", query={"page": page, "page_size": PAGE_SIZE}, ok=(200, 404))
            if not isinstance(got, dict) or not isinstance(got.get("results"), list):
                break  # 404: past the last page
            out += got["results"]
            if not got.get("next"):
                break
        return out

    def project(self, project_id: int) -> dict:
        return self.request("GET", f"/api/projects/{int(project_id)}")

    def create_project(self, title: str, description: str, label_config: str) -> dict:
        return self.request("POST", "/api/projects", {"title": title, "description": description,
                                                      "label_config": label_config,
                                                      "sampling": "Sequential sampling"})

    def update_project(self, project_id: int, fields: dict) -> dict:
        return self.request("PATCH", f"/api/projects/{int(project_id)}", fields)

    def import_tasks(self, project_id: int, tasks: list[dict]) -> dict:
        return self.request("POST", f"/api/projects/{int(project_id)}/import", tasks)

    def update_task(self, task_id: int, data: dict) -> dict:
        return self.request("PATCH", f"/api/tasks/{int(task_id)}", {"data": data})

    def export(self, project_id: int, all_tasks: bool = False) -> list[dict]:
        """The project's tasks in Label Studio's JSON export (with annotations and predictions);
        ``all_tasks`` False: only those with a finished annotation."""
        got = self.request("GET", f"/api/projects/{int(project_id)}/export",
                           query={"exportType": "JSON", "download_all_tasks": "true" if all_tasks else "false"})
        if not isinstance(got, list):
            raise LabelStudioError(f"Label Studio's export of project {project_id} is not a list of tasks")
        return got
