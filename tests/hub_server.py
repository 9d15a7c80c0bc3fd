"""A Hub-protocol HTTP server on loopback for end-to-end tests with the real huggingface_hub/datasets/transformers.

It implements what those clients use (checked against huggingface_hub 2.4, datasets 5, transformers 5): whoami,
repo create/delete/info, branches, tree and paths-info listings, validate-yaml, preupload, the ndjson commit API with
``parentCommit`` (412 when stale), the plain LFS batch API (basic transfer: PUT to an ``href`` then verify), and
``resolve`` downloads by branch or commit sha with ``X-Repo-Commit``, content ``ETag``, exact ``Content-Length`` and
``Range``, and the pull-request listing of the discussions API. Errors carry ``X-Error-Code`` as the Hub's do.
Private repos are unreadable without the owner's token.

It is as strict as the real Hub where the rule is known, so a client bug fails here as it would there:

- every write (repo create/delete, branch, preupload, commit, LFS batch, upload and verify) needs a token with the
  ``write`` role of the repo's namespace owner; read tokens (``HubState.add_token(..., role="read")``) can read
  and ``whoami`` (role ``read``) but get 403 on writes. LFS uploads go to a signed, one-object URL as presigned
  storage URLs do: an unsigned or re-targeted PUT is refused;
- LFS objects must have the size the batch request declared, and commits must declare the size uploaded;
- card metadata is validated on ``validate-yaml`` and on every commit that changes ``README.md`` (license ids,
  pipeline tags, task and size categories, ``model-index`` keys, types of list fields): 400 with the reasons;
- preupload answers ``shouldIgnore: true`` for paths the repo's ``.gitignore`` ignores (simple glob lines).

Faults can be injected per request (a 503, a dropped connection, or a commit applied then answered with a 500 or a
dropped connection) to test retries and idempotency.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import http.server
import itertools
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field

BINARY_SUFFIXES = (".parquet", ".safetensors", ".bin", ".png", ".jpg", ".arrow", ".pt", ".npz")
GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


# What the Hub accepts in card metadata (https://huggingface.co/docs/hub/repositories-licenses, the tasks of
# huggingface.js, the dataset card spec). Names outside these lists are refused, as on the Hub.
LICENSES = frozenset(
    """
apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 bigcode-openrail-m
afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5
cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0
cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0 cdla-permissive-1.0
cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl
lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl openrail++
osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr deepfloyd-if-license llama2 llama3 llama3.1 llama3.2
llama3.3 llama4 gemma unknown other
""".split()
)
TASKS = frozenset(
    """
text-classification token-classification table-question-answering question-answering zero-shot-classification
translation summarization feature-extraction text-generation fill-mask sentence-similarity text-to-speech
text-to-audio automatic-speech-recognition audio-to-audio audio-classification audio-text-to-text
voice-activity-detection depth-estimation image-classification object-detection image-segmentation text-to-image
image-to-text image-to-image image-to-video unconditional-image-generation video-classification
reinforcement-learning robotics tabular-classification tabular-regression tabular-to-text table-to-text
multiple-choice text-ranking text-retrieval time-series-forecasting text-to-video image-text-to-text
visual-question-answering document-question-answering zero-shot-image-classification graph-ml mask-generation
zero-shot-object-detection text-to-3d image-to-3d image-feature-extraction video-text-to-text keypoint-detection
visual-document-retrieval any-to-any video-to-video other
""".split()
)
SIZE_CATEGORIES = frozenset(
    [
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "100K<n<1M",
        "1M<n<10M",
        "10M<n<100M",
        "100M<n<1B",
        "1B<n<10B",
        "10B<n<100B",
        "100B<n<1T",
        "n>1T",
    ]
)
STRING_LISTS = (
    "tags",
    "datasets",
    "metrics",
    "language",
    "base_model",
    "task_ids",
    "language_creators",
    "annotations_creators",
    "source_datasets",
    "multilinguality",
)  # a string or a list of strings
MODEL_INDEX_KEYS = {
    "result": {"task", "dataset", "metrics", "source"},
    "task": {"type", "name"},
    "dataset": {"type", "name", "config", "split", "revision", "args"},
    "metric": {"type", "value", "name", "config", "args", "verified", "verifyToken"},
    "source": {"name", "url"},
}


def card_metadata(text: str) -> tuple[dict | None, str | None]:
    """``(metadata, error)`` of a card's YAML front matter; ``({}, None)`` when it has none."""
    import yaml

    match = re.match(r"^---\r?\n(.*?)\r?\n---\r?\n", text, re.S)
    if not match:
        return {}, None
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as e:
        return None, f"YAML does not parse: {str(e).splitlines()[0]}"
    if data is not None and not isinstance(data, dict):
        return None, "the metadata must be a mapping"
    return data or {}, None


def validate_card(repo_type: str, text: str) -> list[str]:
    """The reasons the Hub would refuse this card's metadata (empty: valid)."""
    data, error = card_metadata(text)
    if error:
        return [error]
    errors = []
    for name in STRING_LISTS:
        value = data.get(name)
        if value is not None and not (
            isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(v, str) for v in value))
        ):
            errors.append(f'"{name}" must be a string or a list of strings, not {value!r}')
    licenses = data.get("license")
    for license_id in [licenses] if isinstance(licenses, str) else licenses or []:
        if license_id not in LICENSES:
            errors.append(f'"license" {license_id!r} is not a license id of the Hub')
    if licenses is not None and not isinstance(licenses, (str, list)):
        errors.append(f'"license" must be a string, not {licenses!r}')
    if "pipeline_tag" in data and (repo_type != "model" or data["pipeline_tag"] not in TASKS):
        errors.append(f'"pipeline_tag" {data["pipeline_tag"]!r} is not a task of the Hub')
    for name, allowed in (("task_categories", TASKS), ("size_categories", SIZE_CATEGORIES)):
        value = data.get(name)
        values = [value] if isinstance(value, str) else value
        if value is not None and (not isinstance(values, list) or any(v not in allowed for v in values)):
            errors.append(f'"{name}" {value!r} holds values the Hub does not know')
    if "model-index" in data:
        errors += _model_index_errors(data["model-index"])
    if "widget" in data and not (isinstance(data["widget"], list) and all(isinstance(w, dict) for w in data["widget"])):
        errors.append('"widget" must be a list of mappings')
    return errors


def _model_index_errors(index) -> list[str]:
    if not isinstance(index, list) or not all(isinstance(m, dict) and isinstance(m.get("name"), str) for m in index):
        return ['"model-index" must be a list of {name, results}']
    errors = []
    for model in index:
        if set(model) - {"name", "results"} or not isinstance(model.get("results"), list):
            errors.append(f'"model-index" entry keys must be name and results, got {sorted(model)}')
            continue
        for result in model["results"]:
            if not isinstance(result, dict) or set(result) - MODEL_INDEX_KEYS["result"]:
                errors.append(f'"model-index" result keys must be among {sorted(MODEL_INDEX_KEYS["result"])}')
                continue
            for key in ("task", "dataset"):
                part = result.get(key)
                if not isinstance(part, dict) or "type" not in part or set(part) - MODEL_INDEX_KEYS[key]:
                    errors.append(f'"model-index" {key} needs a type and keys among {sorted(MODEL_INDEX_KEYS[key])}')
            metrics = result.get("metrics")
            if (
                not isinstance(metrics, list)
                or not metrics
                or any(
                    not isinstance(m, dict) or not {"type", "value"} <= set(m) or set(m) - MODEL_INDEX_KEYS["metric"]
                    for m in metrics
                )
            ):
                errors.append(
                    f'"model-index" metrics need type and value, keys among {sorted(MODEL_INDEX_KEYS["metric"])}'
                )
            task = result.get("task")
            if isinstance(task, dict) and task.get("type") not in TASKS:
                errors.append(f'"model-index" task type {task.get("type")!r} is not a task')
    return errors


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Entry:
    size: int
    oid: str  # git blob id (of the pointer file for LFS)
    sha256: str
    lfs: bool


@dataclass
class Commit:
    sha: str
    parent: str | None
    files: dict[str, Entry]
    title: str


@dataclass
class Repo:
    type: str
    id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit sha
    discussions: list[dict] = field(default_factory=list)  # pull requests, as the discussions API lists them


@dataclass
class Fault:
    """Misbehave on the next ``times`` requests whose method and path match.

    ``kind``: "503" (refuse), "drop" (close the connection without an answer), "apply_500" / "apply_drop" (commits
    only: apply the commit, then answer 500 / close the connection).
    """

    method: str
    path: str  # regex searched in the request path
    kind: str
    times: int = 1


class HubState:
    def __init__(self, tokens: dict[str, str]):
        self.tokens = dict(tokens)  # token -> user name
        self.roles: dict[str, str] = {}  # token -> "read" or "write" (default)
        self.secret = hashlib.sha256(repr(id(self)).encode()).digest()  # signs LFS upload URLs
        self.repos: dict[tuple[str, str], Repo] = {}
        self.commits: dict[str, Commit] = {}
        self.blobs: dict[str, bytes] = {}  # sha256 -> content (regular and LFS alike)
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, int]] = []
        self.lock = threading.RLock()
        self._counter = itertools.count()

    def add_token(self, token: str, user: str, role: str = "write") -> None:
        assert role in ("read", "write")
        self.tokens[token] = user
        self.roles[token] = role

    def sign(self, oid: str, size: int) -> str:
        return hmac.new(self.secret, f"{oid}:{size}".encode(), hashlib.sha256).hexdigest()

    def new_commit(self, parent: str | None, files: dict[str, Entry], title: str) -> Commit:
        tree = json.dumps(sorted((p, e.oid) for p, e in files.items())).encode()
        sha = hashlib.sha1(
            b"%d|%s|%s|" % (next(self._counter), (parent or "").encode(), title.encode()) + tree
        ).hexdigest()
        commit = Commit(sha, parent, dict(files), title)
        self.commits[sha] = commit
        return commit

    def store(self, data: bytes, lfs: bool) -> Entry:
        sha256 = hashlib.sha256(data).hexdigest()
        self.blobs[sha256] = data
        if lfs:
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(data)}\n".encode()
            return Entry(len(data), git_sha1(pointer), sha256, True)
        return Entry(len(data), git_sha1(data), sha256, False)

    def commit_count(self, repo_type: str, repo_id: str, branch: str = "main") -> int:
        repo = self.repos[(repo_type, repo_id)]
        n, sha = 0, repo.branches[branch]
        while sha is not None:
            n, sha = n + 1, self.commits[sha].parent
        return n

    def files(self, repo_type: str, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[(repo_type, repo_id)]
        sha = repo.branches.get(revision, revision)
        return {p: self.blobs[e.sha256] for p, e in self.commits[sha].files.items()}


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether a simple .gitignore (glob lines; a leading '/' anchors, a trailing '/' means a folder) ignores path."""
    parts = path.split("/")
    for pattern in patterns:
        anchored, folder = pattern.startswith("/"), pattern.endswith("/")
        pattern = pattern.strip("/")
        if anchored or "/" in pattern:
            candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + (0 if folder else 1))]
        else:
            candidates = parts[:-1] if folder else parts
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            return True
    return False


class HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HubState
    endpoint: str

    def log_message(self, *args):
        pass

    # --- plumbing -------------------------------------------------------------------------------------------------
    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_OPTIONS(self):
        """A browser's CORS preflight: downloads may come from any page, as the Hub's do (transformers.js)."""
        self._send(204, b"", {"Access-Control-Allow-Methods": "GET, HEAD", "Access-Control-Allow-Headers": "*"})

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        # as the Hub: a page on another origin (a static Space, transformers.js) may read the files and their headers
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Expose-Headers", "Content-Range, ETag, X-Repo-Commit, X-Linked-Size")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj, headers: dict | None = None):
        self._send(status, json.dumps(obj).encode(), headers)

    def _drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(2)
        except OSError:
            pass

    def _fault(self, method: str, path: str) -> Fault | None:
        with self.state.lock:
            for fault in self.state.faults:
                if fault.times > 0 and fault.method == method and re.search(fault.path, path):
                    fault.times -= 1
                    return fault
        return None

    def _dispatch(self, method: str):
        parsed = urllib.parse.urlsplit(self.path)
        path, query = parsed.path, urllib.parse.parse_qs(parsed.query)
        body = self._body() if method in ("POST", "PUT", "DELETE") else b""
        fault = self._fault(method, path)
        if fault is not None and fault.kind == "503":
            self.state.log.append((method, path, 503))
            self._json(503, {"error": "Service Unavailable (injected)"})
            return
        if fault is not None and fault.kind == "drop":
            self.state.log.append((method, path, 0))
            self._drop()
            return
        try:
            status = self._route(method, path, query, body, fault)
        except HttpError as e:
            status = e.status
            self._json(e.status, {"error": e.message}, {"X-Error-Code": e.code} if e.code else None)
        self.state.log.append((method, path, status))

    # --- auth and lookup --------------------------------------------------------------------------------------------
    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth.removeprefix("Bearer ")
            if token not in self.state.tokens:
                raise HttpError(401, "Invalid credentials in Authorization header")
            return self.state.tokens[token]
        return None

    def _role(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return self.state.roles.get(auth.removeprefix("Bearer "), "write") if auth.startswith("Bearer ") else None

    def _writer(self, namespace: str) -> str:
        """The user of a token allowed to write in ``namespace``: 401 without a token, 403 for another user's
        namespace or a read-only token."""
        user = self._user()
        if user is None:
            raise HttpError(401, "Unauthorized: a write token is needed")
        if self._role() != "write":
            raise HttpError(403, "This token has read access only; use a token with the write role")
        if user != namespace:
            raise HttpError(403, "You don't have the rights to write to this repo")
        return user

    def _repo(self, repo_type: str, repo_id: str, *, write: bool = False) -> Repo:
        repo = self.state.repos.get((repo_type, repo_id))
        user = self._user()
        if repo is None or (repo.private and user != repo_id.split("/")[0]):
            raise HttpError(404 if user else 401, "Repository Not Found", "RepoNotFound")
        if write:
            self._writer(repo_id.split("/")[0])
        return repo

    def _commit(self, repo: Repo, revision: str) -> Commit:
        revision = urllib.parse.unquote(revision)
        sha = repo.branches.get(revision)
        if sha is None and re.fullmatch(r"[0-9a-f]{40}", revision) and revision in self.state.commits:
            sha = revision
        if sha is None:
            raise HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.state.commits[sha]

    # --- routes -----------------------------------------------------------------------------------------------------
    def _route(self, method, path, query, body, fault) -> int:
        m = re.fullmatch(r"/api/whoami-v2", path)
        if m and method == "GET":
            user = self._user()
            if user is None:
                raise HttpError(401, "Unauthorized")
            self._json(200, {"type": "user", "name": user, "auth": {"accessToken": {"role": self._role()}}})
            return 200
        if path == "/api/validate-yaml" and method == "POST":
            data = json.loads(body or b"{}")
            errors = validate_card(data.get("repoType") or "model", data.get("content") or "")
            if errors:  # as the Hub answers: huggingface_hub reads "errors" (create_commit) or the text (validate)
                self._json(
                    400,
                    {
                        "error": "Invalid metadata: " + "; ".join(errors),
                        "warnings": [],
                        "errors": [{"message": e} for e in errors],
                    },
                )
                return 400
            self._json(200, {"errors": [], "warnings": []})
            return 200
        if path == "/api/repos/create" and method == "POST":
            return self._create_repo(json.loads(body or b"{}"))
        if path == "/api/repos/delete" and method == "DELETE":
            data = json.loads(body or b"{}")
            user = self._user()
            if user is None:
                raise HttpError(401, "Unauthorized")
            repo_id = f"{data.get('organization') or user}/{data['name']}"
            repo = self._repo(data.get("type") or "model", repo_id, write=True)
            del self.state.repos[(repo.type, repo.id)]
            self._json(200, {})
            return 200
        m = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+?)(?:/revision/(.+))?", path)
        if m and method == "GET":
            return self._info(m.group(1)[:-1], m.group(2), m.group(3) or "main")
        m = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path)
        if m and method == "GET":
            return self._tree(m.group(1)[:-1], m.group(2), m.group(3), m.group(4) or "", query)
        m = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/paths-info/([^/]+)", path)
        if m and method == "POST":
            form = urllib.parse.parse_qs(body.decode())
            return self._paths_info(m.group(1)[:-1], m.group(2), m.group(3), form.get("paths", []))
        m = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/branch/(.+)", path)
        if m and method == "POST":
            repo = self._repo(m.group(1)[:-1], m.group(2), write=True)
            branch = urllib.parse.unquote(m.group(3))
            if branch in repo.branches:
                raise HttpError(409, "Reference already exists")
            repo.branches[branch] = repo.branches["main"]
            self._json(200, {})
            return 200
        m = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/preupload/([^/]+)", path)
        if m and method == "POST":
            repo = self._repo(m.group(1)[:-1], m.group(2), write=True)
            ignored = self._gitignore(self._commit(repo, m.group(3)))
            files = json.loads(body)["files"]
            self._json(
                200,
                {
                    "files": [
                        {"path": f["path"], "uploadMode": self._mode(f), "shouldIgnore": _ignored(f["path"], ignored)}
                        for f in files
                    ]
                },
            )
            return 200
        m = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/discussions", path)
        if m and method == "GET":
            return self._discussions(m.group(1)[:-1], m.group(2), query)
        m = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/commit/([^/]+)", path)
        if m and method == "POST":
            return self._create_commit(m.group(1)[:-1], m.group(2), m.group(3), body, query, fault)
        m = re.fullmatch(r"/(datasets/|spaces/)?([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
        if m and method == "POST":
            kind = m.group(1)[:-2] if m.group(1) else "model"
            self._repo(kind, m.group(2), write=True)
            return self._lfs_batch(body)
        m = re.fullmatch(r"/lfs-upload/([0-9a-f]{64})/(\d+)", path)
        if m and method == "PUT":  # no Authorization header here, as on the Hub's storage: the URL is signed
            oid, size = m.group(1), int(m.group(2))
            if not hmac.compare_digest(query.get("sig", [""])[0], self.state.sign(oid, size)):
                raise HttpError(403, "Request signature does not match")
            if len(body) != size:
                raise HttpError(400, f"Uploaded {len(body)} bytes, the batch request declared {size}")
            if hashlib.sha256(body).hexdigest() != oid:
                raise HttpError(400, "sha256 mismatch")
            self.state.blobs[oid] = body
            self._send(200)
            return 200
        m = re.fullmatch(r"/(datasets/|spaces/)?([^/]+/[^/]+)/lfs-verify/([0-9a-f]{64})", path)
        if m and method == "POST":
            self._repo(m.group(1)[:-2] if m.group(1) else "model", m.group(2), write=True)
            declared = json.loads(body or b"{}")
            if m.group(3) not in self.state.blobs:
                raise HttpError(404, "object not uploaded")
            if declared.get("size") != len(self.state.blobs[m.group(3)]):
                raise HttpError(422, f"size {declared.get('size')} differs from the uploaded object's")
            self._json(200, {})
            return 200
        m = re.fullmatch(r"/(datasets/|spaces/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m and method in ("GET", "HEAD"):
            kind = (m.group(1) or "models/").rstrip("/")[:-1] if m.group(1) else "model"
            return self._resolve(kind, m.group(2), m.group(3), urllib.parse.unquote(m.group(4)))
        raise HttpError(404, f"no route for {method} {path}")

    def _create_repo(self, data: dict) -> int:
        user = self._user()
        if user is None:
            raise HttpError(401, "Unauthorized")
        repo_type = data.get("type") or "model"
        namespace = data.get("organization") or user
        self._writer(namespace)
        repo_id = f"{namespace}/{data['name']}"
        url = f"{self.endpoint}/{PREFIX[repo_type]}{repo_id}"
        with self.state.lock:
            if (repo_type, repo_id) in self.state.repos:
                self._json(409, {"error": "You already created this repo", "url": url})
                return 409
            private = bool(data.get("private")) or data.get("visibility") in ("private", "protected")
            repo = Repo(repo_type, repo_id, private)
            first = self.state.new_commit(
                None, {".gitattributes": self.state.store(GITATTRIBUTES, False)}, "initial commit"
            )
            repo.branches["main"] = first.sha
            self.state.repos[(repo_type, repo_id)] = repo
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})
        return 200

    def _info(self, repo_type: str, repo_id: str, revision: str) -> int:
        repo = self._repo(repo_type, repo_id)
        commit = self._commit(repo, revision)
        info = {
            "id": repo_id,
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
            "author": repo_id.split("/")[0],
            "sha": commit.sha,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "lastModified": "2026-11-29T00:00:00.000Z",
            "createdAt": "2026-11-29T00:00:00.000Z",
            "siblings": [{"rfilename": p} for p in sorted(commit.files)],
        }
        card = self._card_metadata(commit)
        if card:
            info["cardData"] = card
        if repo_type == "model":
            info["pipeline_tag"] = card.get("pipeline_tag")
            info["library_name"] = card.get("library_name")
        self._json(200, info)
        return 200

    def _card_metadata(self, commit: Commit) -> dict:
        entry = commit.files.get("README.md")
        if entry is None:
            return {}
        import yaml

        text = self.state.blobs[entry.sha256].decode()
        match = re.match(r"^---\n(.*?)\n---", text, re.S)
        return yaml.safe_load(match.group(1)) or {} if match else {}

    def _entry_json(self, path: str, entry: Entry) -> dict:
        out = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
        if entry.lfs:
            out["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": 134}
        return out

    def _listing(self, commit: Commit, base: str, recursive: bool) -> list[dict]:
        base = base.strip("/")
        prefix = f"{base}/" if base else ""
        if base and base in commit.files:
            return [self._entry_json(base, commit.files[base])]
        files = {p: e for p, e in commit.files.items() if p.startswith(prefix)}
        if base and not files:
            raise HttpError(404, f"{base} does not exist", "EntryNotFound")
        out, dirs = [], set()
        for p, e in sorted(files.items()):
            rest = p[len(prefix) :]
            parts = rest.split("/")
            for i in range(1, len(parts)):
                d = prefix + "/".join(parts[:i])
                if d not in dirs and (recursive or i == 1):
                    dirs.add(d)
                    out.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d})
            if recursive or len(parts) == 1:
                out.append(self._entry_json(p, e))
        return out

    def _tree(self, repo_type, repo_id, revision, base, query) -> int:
        commit = self._commit(self._repo(repo_type, repo_id), revision)
        recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
        self._json(200, self._listing(commit, urllib.parse.unquote(base), recursive))
        return 200

    def _paths_info(self, repo_type, repo_id, revision, paths) -> int:
        commit = self._commit(self._repo(repo_type, repo_id), revision)
        out = []
        for p in paths:
            p = p.strip("/")
            if p in commit.files:
                out.append(self._entry_json(p, commit.files[p]))
            elif any(f.startswith(p + "/") for f in commit.files):
                out.append({"type": "directory", "oid": hashlib.sha1(p.encode()).hexdigest(), "size": 0, "path": p})
        self._json(200, out)
        return 200

    @staticmethod
    def _mode(file: dict) -> str:
        sample = base64.b64decode(file.get("sample", ""))
        if file["path"].endswith(BINARY_SUFFIXES) or b"\0" in sample or file.get("size", 0) >= 1 << 20:
            return "lfs"
        return "regular"

    def _lfs_batch(self, body: bytes) -> int:
        objects = []
        prefix = self.path.split(".git/info/lfs")[0]
        for obj in json.loads(body)["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.state.blobs:
                sig = self.state.sign(obj["oid"], obj["size"])
                entry["actions"] = {
                    "upload": {"href": f"{self.endpoint}/lfs-upload/{obj['oid']}/{obj['size']}?sig={sig}"},
                    "verify": {"href": f"{self.endpoint}{prefix}/lfs-verify/{obj['oid']}"},
                }
            objects.append(entry)
        self._send(
            200,
            json.dumps({"transfer": "basic", "objects": objects}).encode(),
            content_type="application/vnd.git-lfs+json",
        )
        return 200

    def _create_commit(self, repo_type, repo_id, revision, body, query, fault) -> int:
        repo = self._repo(repo_type, repo_id, write=True)
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        branch = urllib.parse.unquote(revision)
        create_pr = query.get("create_pr", ["0"])[0] in ("1", "true", "True")
        with self.state.lock:
            if branch not in repo.branches:
                raise HttpError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            head = repo.branches[branch]
            parent = header.get("parentCommit")
            if parent and parent != head:
                raise HttpError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(self.state.commits[head].files)
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "file":
                    files[value["path"]] = self.state.store(base64.b64decode(value["content"]), False)
                elif key == "lfsFile":
                    if value["oid"] not in self.state.blobs:
                        raise HttpError(422, f"LFS object {value['oid']} was not uploaded")
                    if "size" in value and value["size"] != len(self.state.blobs[value["oid"]]):
                        raise HttpError(
                            422,
                            f"{value['path']}: declared size {value['size']} differs from the "
                            f"uploaded object's ({len(self.state.blobs[value['oid']])})",
                        )
                    files[value["path"]] = self.state.store(self.state.blobs[value["oid"]], True)
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise HttpError(404, f"{value['path']} does not exist", "EntryNotFound")
                elif key == "deletedFolder":
                    files = {p: e for p, e in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            readme = files.get("README.md")
            if readme is not None and readme != self.state.commits[head].files.get("README.md"):
                errors = validate_card(repo_type, self.state.blobs[readme.sha256].decode("utf-8", "replace"))
                if errors:
                    raise HttpError(400, "Invalid metadata in README.md: " + "; ".join(errors))
            commit = self.state.new_commit(head, files, header.get("summary", ""))
            pr_url = None
            if create_pr:
                num = len(repo.discussions) + 1
                repo.branches[f"refs/pr/{num}"] = commit.sha
                repo.discussions.append(
                    {
                        "num": num,
                        "title": header.get("summary", ""),
                        "status": "open",
                        "isPullRequest": True,
                        "author": {"name": self._user()},
                        "createdAt": "2026-11-29T00:00:00.000Z",
                        "repo": {"name": repo_id, "type": repo_type},
                    }
                )
                pr_url = f"{self.endpoint}/{PREFIX[repo_type]}{repo_id}/discussions/{num}"
            else:
                repo.branches[branch] = commit.sha
        if fault is not None and fault.kind == "apply_500":
            self._json(500, {"error": "Internal Error (injected, commit applied)"})
            return 500
        if fault is not None and fault.kind == "apply_drop":
            self._drop()
            return 0
        self._json(
            200,
            {
                "success": True,
                "commitOid": commit.sha,
                "pullRequestUrl": pr_url,
                "commitUrl": f"{self.endpoint}/{PREFIX[repo_type]}{repo_id}/commit/{commit.sha}",
            },
        )
        return 200

    def _discussions(self, repo_type, repo_id, query) -> int:
        repo = self._repo(repo_type, repo_id)
        found = [
            d
            for d in reversed(repo.discussions)  # newest first, as the Hub lists them
            if query.get("type", ["all"])[0] in ("all", "pull_request" if d["isPullRequest"] else "discussion")
            and query.get("status", ["all"])[0] in ("all", d["status"])
            and query.get("author", [d["author"]["name"]])[0] == d["author"]["name"]
        ]
        page, per_page = int(query.get("p", ["0"])[0]), 50
        self._json(
            200,
            {
                "discussions": found[page * per_page : (page + 1) * per_page],
                "count": len(found),
                "start": page * per_page,
                "numClosedDiscussions": 0,
            },
        )
        return 200

    def _gitignore(self, commit: Commit) -> list[str]:
        entry = commit.files.get(".gitignore")
        if entry is None:
            return []
        lines = self.state.blobs[entry.sha256].decode("utf-8", "replace").splitlines()
        return [line.strip() for line in lines if line.strip() and not line.startswith(("#", "!"))]

    def _resolve(self, repo_type, repo_id, revision, path) -> int:
        repo = self._repo(repo_type, repo_id)
        commit = self._commit(repo, revision)
        entry = commit.files.get(path)
        if entry is None:
            raise HttpError(404, f"Entry not found: {path}", "EntryNotFound")
        data = self.state.blobs[entry.sha256]
        etag = f'"{entry.sha256 if entry.lfs else entry.oid}"'
        headers = {"X-Repo-Commit": commit.sha, "ETag": etag, "Accept-Ranges": "bytes"}
        if entry.lfs:
            headers.update({"X-Linked-Etag": etag, "X-Linked-Size": str(entry.size)})
        byte_range = self.headers.get("Range")
        if byte_range and (m := re.fullmatch(r"bytes=(\d*)-(\d*)", byte_range.strip())):
            start = int(m.group(1)) if m.group(1) else max(0, len(data) - int(m.group(2)))
            end = int(m.group(2)) if m.group(1) and m.group(2) else len(data) - 1
            end = min(end, len(data) - 1)
            if start >= len(data):
                self._send(416, b"", {"Content-Range": f"bytes */{len(data)}", **headers})
                return 416
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self._send(206, data[start : end + 1], headers, "application/octet-stream")
            return 206
        self._send(200, data, headers, "application/octet-stream")
        return 200


class HubServer:
    """``HubServer(tokens={"hf_...": "user"})`` on 127.0.0.1, port 0; ``.endpoint``, ``.state``, ``.close()``."""

    def __init__(self, tokens: dict[str, str]):
        self.state = HubState(tokens)
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"
        handler.endpoint = self.endpoint
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
