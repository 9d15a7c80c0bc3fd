"""Publishing to the Hugging Face Hub: a dataset export or a model folder, as one idempotent commit.

Built on huggingface_hub's HTTP API (``create_repo``, ``create_commit``), no git. A push compares the local folder with
the remote revision and commits only the difference, with ``parent_commit`` set, so:

- pushing unchanged content makes no commit;
- after a failure (a 5xx, a dropped connection, a conflict) the remote state is read again before retrying, so a
  commit the server applied but whose response was lost is never applied twice, and a half-finished push ends with
  the complete content;
- retries are bounded, back off exponentially, and say what they retry.

Tokens come from ``token=`` / ``--token``, ``$HF_TOKEN`` or the stored login, are checked with ``whoami`` before
anything is uploaded, and never appear in messages, cards or uploaded files.

>>> push_model("me/fmnist-cnn", "out")                      # doctest: +SKIP
'https://huggingface.co/me/fmnist-cnn'
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import HfFmnistError, listing, printable
from .files import DATASET_FILES, DATASET_IGNORE, MODEL_FILES, MODEL_IGNORE, LocalFile, gather, model_files

__all__ = ["MODEL_FILES", "MODEL_IGNORE", "DATASET_FILES", "DATASET_IGNORE", "push_folder", "push_model"]

MAX_ATTEMPTS = 5
BACKOFF_S = 1.0  # first wait; doubles each retry
KEEP_REMOTE = (".gitattributes",)
DEFAULT_DATASET_NAME = "hf_fmnist"  # push-dataset without --repo-id: <your namespace>/hf_fmnist


class HubError(HfFmnistError):
    """A push could not be completed; the message says what to do."""


def resolve_token(token: str | None = None) -> str:
    """``token``, else ``$HF_TOKEN``, else the stored login; a clear error when there is none."""
    from huggingface_hub import get_token

    token = token or os.environ.get("HF_TOKEN") or get_token()
    if not token:
        raise HubError(
            "No Hugging Face token: pass --token, set HF_TOKEN, or run `hf auth login` (a token with write access)."
        )
    if not re.fullmatch(r"[\x21-\x7e]+", token):  # an HTTP header cannot carry it: not a network problem
        raise HubError(
            "The Hugging Face token holds a space, a line break or another character no token has; check --token / "
            "HF_TOKEN (a pasted token may carry a newline) or run `hf auth login`."
        )
    return token


def check_repo_id(repo_id) -> str:
    """``repo_id`` if it is ``NAMESPACE/NAME`` as huggingface_hub validates it (a namespace is required here)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(repo_id, str):
        raise HubError(f"Repo id must be a string, not {type(repo_id).__name__}: '{repo_id}'.")
    try:
        validate_repo_id(repo_id)
        valid = repo_id.count("/") == 1
    except HFValidationError:
        valid = False
    if not valid:
        raise HubError(
            f"Repo id must look like NAMESPACE/NAME (letters, digits, '-', '_', '.'), not '{printable(repo_id)[:200]}'."
        )
    return repo_id


def _same(local: LocalFile, remote) -> bool:
    if remote.lfs is not None:
        return remote.lfs.sha256 == local.sha256
    return remote.blob_id == local.git_sha1


def plan(api, repo_id: str, repo_type: str, revision: str, files: dict[str, LocalFile]):
    """``(head sha, additions, deletions)`` that make ``revision`` equal to ``files``."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.hf_api import RepoFile

    info = api.repo_info(repo_id, repo_type=repo_type, revision=revision)
    remote = {
        entry.path: entry
        for entry in api.list_repo_tree(repo_id, repo_type=repo_type, revision=info.sha, recursive=True)
        if isinstance(entry, RepoFile)
    }
    additions = [
        CommitOperationAdd(
            path_in_repo=f.path_in_repo, path_or_fileobj=f.content if f.content is not None else str(f.local_path)
        )
        for rel, f in files.items()
        if rel not in remote or not _same(f, remote[rel])
    ]
    deletions = [
        CommitOperationDelete(path_in_repo=rel) for rel in sorted(remote) if rel not in files and rel not in KEEP_REMOTE
    ]
    return info.sha, additions, deletions


def push_folder(
    repo_id: str | None,
    folder: str | os.PathLike,
    *,
    repo_type: str,
    ignore: Sequence[str] = (),
    include: Sequence[str | re.Pattern[str]] | None = None,
    check: Callable[[Path, list[str]], None] | None = None,
    render: Callable[[Path, str, str | None], dict[str, bytes]] | None = None,
    default_name: str | None = None,
    space_sdk: str | None = None,
    log: Callable[[str], None] | None = None,
    **options,
) -> dict:
    """Make a revision of the repo hold exactly the publishable files of ``folder``; returns what happened.

    ``{"url", "repo_id", "commit": sha or None, "changed": bool, "files": n, "pr_url": url or None}``; ``commit`` is
    None when nothing changed. Files pass the publishing gate (:func:`hf_fmnist.hub.files.gather`: ``include`` is
    the repo type's list, ``ignore`` what stays local silently) and are uploaded from the private snapshot it
    writes. ``check(snapshot, left out)`` may refuse the push before the Hub is asked anything (``left out``: the
    folder's paths the gate named in the log, not those ignored). ``render(snapshot, repo_id, remote README.md text
    or None)`` returns files (path → bytes) uploaded instead, such as the card rendered for this repo from the
    snapshot's files. ``repo_id`` None: ``<the token's namespace>/<default_name>``, as the transformers Trainer does.
    ``options``: the user's :class:`PushChoices` (token, private, revision, commit_message, create_pr).
    ``space_sdk`` is required by the Hub when ``repo_type="space"`` creates the repo.
    """
    log = log or (lambda message: print(message, file=sys.stderr))
    choices = PushChoices(**options)
    if repo_id is not None:
        repo_id = check_repo_id(repo_id)
    folder = Path(folder)
    if not folder.is_dir():
        raise HubError(f"{folder} is not a folder; pass the folder to publish.")
    with tempfile.TemporaryDirectory(prefix="hf_fmnist-push-") as snapshot:
        left_out: list[str] = []
        files = gather(folder, Path(snapshot), include=include, ignore=ignore, log=log, left_out=left_out)
        if not files:
            raise HubError(f"{folder} holds no files to publish.")
        if check is not None:
            check(Path(snapshot), left_out)
        session = _Session.open(choices, log)
        repo_id = repo_id or session.default_repo(default_name or folder.resolve().name)
        target = session.target(repo_id, repo_type, space_sdk)
        if render is not None:
            remote_card = session.call(lambda: _remote_text(session.api, *target, "README.md"), "read the remote card")
            for path, content in render(Path(snapshot), repo_id, remote_card).items():
                files[path] = LocalFile.rendered(path, Path(snapshot) / path, content)
        message = choices.commit_message or f"Upload {folder.name} with hf_fmnist"
        return session.commit_until_done(target, files, message)


@dataclass(frozen=True)
class PushChoices:
    """What the user chose for a push, beyond the repo id and the folder."""

    token: str | None = None
    private: bool = False
    revision: str | None = None
    commit_message: str | None = None
    create_pr: bool = False

    @property
    def branch(self) -> str:
        return self.revision or "main"


@dataclass
class _Session:
    """A checked token's API client, and the steps of a push that talk to the Hub."""

    api: Any  # huggingface_hub.HfApi, imported when a push starts
    choices: PushChoices
    log: Callable[[str], None]
    url: str = ""

    @classmethod
    def open(cls, choices: PushChoices, log) -> _Session:
        from huggingface_hub import HfApi

        api = HfApi(token=resolve_token(choices.token), library_name="hf_fmnist")
        _check_token(api)
        return cls(api, choices, log)

    def call(self, fn, what: str):
        return _call(fn, what, self.log)

    @functools.cached_property
    def user(self) -> str:
        return self.call(lambda: self.api.whoami()["name"], "read the token's user name")

    def default_repo(self, name: str) -> str:
        repo_id = check_repo_id(f"{self.user}/{repo_name(name)}")
        self.log(f"No repo id given: pushing to {repo_id}.")
        return repo_id

    def target(self, repo_id: str, repo_type: str, space_sdk: str | None) -> tuple[str, str, str]:
        """Create the repo (and branch) if needed; ``(repo_id, repo_type, branch)``."""
        private, branch = self.choices.private, self.choices.branch
        self.url = str(
            self.call(
                lambda: self.api.create_repo(
                    repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk
                ),
                "create the repo",
            )
        )
        if branch != "main" and not self.choices.create_pr:
            self.call(
                lambda: self.api.create_branch(repo_id, repo_type=repo_type, branch=branch, exist_ok=True),
                f"create branch {branch}",
            )
        return repo_id, repo_type, branch

    def commit_until_done(self, target: tuple[str, str, str], files: dict[str, LocalFile], message: str) -> dict:
        """Commit the difference, re-reading the remote state after each failure: one commit, or none if equal."""
        repo_id = target[0]
        done = {"url": self.url, "repo_id": repo_id, "files": len(files), "pr_url": None}
        for attempt in range(1, MAX_ATTEMPTS + 1):
            head, additions, deletions = self.call(lambda: plan(self.api, *target, files), "read the remote state")
            if not additions and not deletions:
                if attempt == 1:
                    self.log(f"{repo_id}@{target[2]} already holds this content: no commit made.")
                return {**done, "commit": None if attempt == 1 else head, "changed": attempt > 1}
            if self.choices.create_pr:  # a PR of ours holding this content (an earlier run, a lost answer): reuse it
                pr = self.call(
                    lambda: _open_pull_request_holding(self.api, *target[:2], self.user, files),
                    "list the open pull requests",
                )
                if pr is not None:
                    self.log(f"Pull request {pr.url} already holds this content: no new pull request opened.")
                    commit = None if attempt == 1 else pr.git_reference
                    return {**done, "commit": commit, "changed": attempt > 1, "pr_url": pr.url}
            try:
                return {**done, **self._commit(target, head, additions, deletions, message)}
            except Exception as e:  # retried only if a re-read and a new try can help (the commit may have landed)
                failure = _retryable_commit_failure(e, repo_id)
            _back_off(attempt, f"Commit to {repo_id} failed ({failure})", "re-reading the remote state and ", self.log)
        raise HubError(f"Could not push to {repo_id} after {MAX_ATTEMPTS} attempts; run the same command again later.")

    def _commit(self, target, head: str, additions: list, deletions: list, message: str) -> dict:
        repo_id, repo_type, branch = target
        create_pr = self.choices.create_pr
        info = self.api.create_commit(
            repo_id,
            additions + deletions,
            commit_message=message,
            repo_type=repo_type,
            revision=branch,
            parent_commit=head,
            create_pr=create_pr,
        )
        changes = f"{len(additions)} added/changed and {len(deletions)} deleted file(s)"
        if create_pr:
            self.log(f"Opened pull request {info.pr_url} against {repo_id}@{branch} with {changes}.")
        else:
            self.log(f"Committed {changes} to {repo_id}@{branch}.")
        return {"commit": info.oid, "changed": True, "pr_url": info.pr_url if create_pr else None}


def repo_name(name: str) -> str:
    """``name`` made a valid repo name (a folder name as the default repo name, as the Trainer does)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")
    cleaned = re.sub(r"\.{2,}", ".", cleaned)[:96].rstrip("-.")
    return cleaned or "model"


def _remote_text(api, repo_id: str, repo_type: str, revision: str, path: str) -> str | None:
    """A small text file of the remote revision, or None when it has none (or it is too large to be a card)."""
    import tempfile

    from huggingface_hub.hf_api import RepoFile

    from ..core.card import MAX_README_BYTES

    entries = api.get_paths_info(repo_id, [path], repo_type=repo_type, revision=revision)
    entry = next((e for e in entries if isinstance(e, RepoFile) and e.path == path), None)
    if entry is None or entry.size > MAX_README_BYTES:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        local = api.hf_hub_download(repo_id, path, repo_type=repo_type, revision=revision, local_dir=tmp)
        return Path(local).read_bytes().decode("utf-8", "replace")


def _open_pull_request_holding(
    api, repo_id: str, repo_type: str, user: str, files: dict[str, LocalFile], limit: int = 50
):
    """The newest open pull request by ``user`` whose head holds exactly ``files``, or None (``limit`` looked at)."""
    discussions = api.get_repo_discussions(
        repo_id, repo_type=repo_type, author=user, discussion_type="pull_request", discussion_status="open"
    )
    for n, pr in enumerate(discussions):
        if n >= limit:
            break
        if not pr.is_pull_request or pr.status != "open" or pr.author != user:
            continue
        _, additions, deletions = plan(api, repo_id, repo_type, pr.git_reference, files)
        if not additions and not deletions:
            return pr
    return None


def push_model(repo_id: str | None, model_dir: str | os.PathLike, **kwargs) -> str:
    """Publish a training output folder (model, processor, card, plots, results, config, TensorBoard logs).

    The card is rendered for ``repo_id`` from the folder's files (the folder's own README.md is not uploaded as is);
    a demo block a Space push added to the remote card is kept. ``repo_id`` None: ``<your namespace>/<folder
    name>``. Returns the repo's URL, or the pull request's with ``create_pr=True``.
    """
    from ..core.card import demo_block, render_model_card
    from ..core.export_record import check_current

    folder = Path(model_dir)
    for required in MODEL_REQUIRED:
        if not (folder / required).is_file():
            raise HubError(f"{folder} has no {required}: pass a folder written by `train.py` (training finished).")

    def check(snapshot: Path, left_out: list[str]) -> None:  # before the repo is created
        _require(folder, snapshot, MODEL_REQUIRED)  # the card is rendered from what passed the gate, read once
        with _naming(folder, snapshot):
            # every file the card and the published config read (all_results.json, training_config.json, config.json
            # with its id2label), checked now: a refusal after the repo exists left an empty repo behind (the repo
            # id only changes the card's links)
            render_model_card(snapshot, repo_id=repo_id or "namespace/name", endpoint=_endpoint())
            _public_training_config(snapshot)
            check_current(snapshot)  # an onnx/ left by an older model in this folder is not published as this one's

    def render(snapshot: Path, repo: str, remote_card: str | None) -> dict[str, bytes]:
        with _naming(folder, snapshot):
            card = render_model_card(snapshot, repo_id=repo, endpoint=_endpoint(), demo=demo_block(remote_card))
            return {"README.md": card.encode(), **_public_training_config(snapshot)}

    result = push_folder(
        repo_id,
        folder,
        repo_type="model",
        ignore=MODEL_IGNORE,
        include=model_files(folder),
        check=check,
        render=render,
        default_name=folder.resolve().name,
        **kwargs,
    )
    return result["pr_url"] or result["url"]


@contextlib.contextmanager
def _naming(folder: Path, snapshot: Path):
    """A refusal about a file of the snapshot names the user's folder instead (the snapshot is a temp folder)."""
    try:
        yield
    except HfFmnistError as e:
        message = str(e).replace(f"{snapshot}{os.sep}", f"{folder}{os.sep}")
        if message == str(e):
            raise
        raise HubError(message) from None


MODEL_REQUIRED = ("config.json", "model.safetensors", "README.md", "all_results.json", "training_config.json")


def _require(folder: Path, snapshot: Path, names: Sequence[str]) -> None:
    """Refuse a push whose required files did not pass the publishing gate (the log above said why)."""
    missing = [name for name in names if not (snapshot / name).is_file()]
    if missing:
        raise HubError(
            f"{folder}: {', '.join(missing)} cannot be published (a link, a hard link or not a regular file; see the "
            f"line above); replace it with a plain copy to publish the folder."
        )


def _public_training_config(folder: Path) -> dict[str, bytes]:
    """``training_config.json`` without local paths, for folders trained before it was saved that way (else {})."""
    import json

    from ..core.config import CONFIG_FILE, TrainConfig

    config = TrainConfig.load(folder)  # first: it checks the file and answers in one line if it cannot be read
    saved = json.loads((folder / CONFIG_FILE).read_text())
    public = config.public_dict()
    if saved.get("config") == public:
        return {}
    fixed = {**saved, "config": public, "sources": saved.get("sources") or config.sources()}
    return {CONFIG_FILE: (json.dumps(fixed, indent=2, sort_keys=True) + "\n").encode()}


def push_dataset(repo_id: str | None, dataset_dir: str | os.PathLike, **kwargs) -> str:
    """Publish a folder written by ``hf-fmnist build`` (Parquet shards and the dataset card; never a script).

    The card's snippet is rendered for ``repo_id``; ``repo_id`` None: ``<your namespace>/hf_fmnist``. Returns the
    repo's URL, or the pull request's with ``create_pr=True``.
    """
    from ..data.card import dataset_card_for_repo

    folder = Path(dataset_dir)
    if not (folder / "README.md").is_file() or not list((folder / "data").glob("*.parquet")):
        raise HubError(f"{folder} is not a dataset export (README.md and data/*.parquet); run `hf-fmnist build`.")
    scripts = [p.name for p in folder.rglob("*.py")]
    if scripts:
        raise HubError(f"{folder} holds loading scripts ({', '.join(scripts)}); datasets >= 4 refuses such repos.")

    def check(snapshot: Path, left_out: list[str]) -> None:
        _require(folder, snapshot, ("README.md",))  # the card published is the one read once through the gate
        _require_data(folder, snapshot, left_out)

    def render(snapshot: Path, repo: str, remote_card: str | None) -> dict[str, bytes]:
        card = (snapshot / "README.md").read_bytes().decode("utf-8", "replace")
        return {"README.md": dataset_card_for_repo(card, repo).encode()}

    result = push_folder(
        repo_id,
        folder,
        repo_type="dataset",
        ignore=DATASET_IGNORE,
        include=DATASET_FILES,
        check=check,
        render=render,
        default_name=DEFAULT_DATASET_NAME,
        **kwargs,
    )
    return result["pr_url"] or result["url"]


def _require_data(folder: Path, snapshot: Path, left_out: list[str]) -> None:
    """Refuse a dataset push that leaves out a shard (``data/*.parquet``) or a file the card's ``configs`` name: the
    card would declare a split the published repo cannot load."""
    shards = (folder / "data").glob("*.parquet") if (folder / "data").is_dir() else ()
    missing = sorted(
        {f"data/{p.name}" for p in shards if not p.name.startswith(".")}
        - {"data/" + p.name for p in (snapshot / "data").glob("*.parquet")}
    )
    others = [rel for rel in left_out if rel not in missing]
    if others:
        patterns = _card_data_patterns(folder, snapshot / "README.md")
        missing += [rel for rel in others if any(_names(pattern, rel) for pattern in patterns)]
    if missing:
        shown = listing(missing, 3)
        raise HubError(
            f"{folder}: {shown[:300]} cannot be published (see the line above), and the dataset card's splits need "
            f"it; replace it with a plain copy (or remove it and its split) to publish the dataset."
        )


def _card_data_patterns(folder: Path, card: Path) -> list[str]:
    """The path patterns the card's ``configs`` give ``datasets`` (``data_files``; ``data_dir`` as ``DIR/*``)."""
    from ..data.card import card_configs, config_paths, read_metadata

    shown = folder / "README.md"  # ``card`` is the push's private copy
    configs = card_configs(read_metadata(card, shown), shown)  # checked: strings where paths are, lists bounded
    return [path.rstrip("/") + "/*" if is_dir else path for path, is_dir in config_paths(configs)]


def _names(pattern: str, rel: str) -> bool:
    """Whether a card's ``data_files`` pattern names ``rel`` (a file, or a folder it reads from)."""
    import fnmatch

    pattern = pattern.removeprefix("./")
    return fnmatch.fnmatchcase(rel, pattern) or pattern.startswith(rel + "/")


def update_file(
    repo_id: str,
    path_in_repo: str,
    edit: Callable[[str | None], str | None],
    *,
    repo_type: str = "model",
    token: str | None = None,
    commit_message: str,
    log: Callable[[str], None] | None = None,
) -> bool:
    """Commit ``edit(current text or None)`` as ``path_in_repo`` on main, only if that changes it; True if committed.

    The rest of the repo is left alone (unlike :func:`push_folder`). The commit names the revision it edited
    (``parent_commit``), so a concurrent change is re-read and edited again rather than overwritten.
    """
    from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError
    from huggingface_hub.hf_api import RepoFile

    from ..core.card import MAX_README_BYTES

    log = log or (lambda message: print(message, file=sys.stderr))
    api = HfApi(token=resolve_token(token), library_name="hf_fmnist")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        head = _call(lambda: api.repo_info(check_repo_id(repo_id), repo_type=repo_type).sha, "read the repo", log)

        def read(revision=head) -> str | None:
            entries = api.get_paths_info(repo_id, [path_in_repo], repo_type=repo_type, revision=revision)
            entry = next((e for e in entries if isinstance(e, RepoFile) and e.path == path_in_repo), None)
            if entry is None:
                return None
            if entry.size > MAX_README_BYTES:  # as _remote_text: a card is kilobytes, and edits hold it in memory
                raise HubError(
                    f"{path_in_repo} of {repo_id} is {entry.size:,} bytes, more than {MAX_README_BYTES:,} (the most "
                    f"hf_fmnist edits); left as it is."
                )
            try:
                local = hf_hub_download(repo_id, path_in_repo, repo_type=repo_type, revision=revision, token=api.token)
            except EntryNotFoundError:
                return None
            data = Path(local).read_bytes()
            if len(data) > MAX_README_BYTES:  # replaced on the Hub since it was listed
                raise HubError(f"{path_in_repo} of {repo_id} is more than {MAX_README_BYTES:,} bytes; left as it is.")
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                raise HubError(f"{path_in_repo} of {repo_id} is not UTF-8 text; left as it is.") from None

        old = _call(read, f"download {path_in_repo}", log)
        new = edit(old)
        if new is None or new == old:
            return False
        try:
            api.create_commit(
                repo_id,
                [CommitOperationAdd(path_in_repo, new.encode("utf-8"))],
                repo_type=repo_type,
                commit_message=commit_message,
                parent_commit=head,
            )
            log(f"Updated {path_in_repo} of {repo_id}.")
            return True
        except Exception as e:
            failure = _retryable_commit_failure(e, repo_id)
        _back_off(attempt, f"Updating {path_in_repo} of {repo_id} failed ({failure})", "re-reading and ", log)
    raise HubError(f"Could not update {path_in_repo} of {repo_id} after {MAX_ATTEMPTS} attempts; run it again later.")


def _retryable_commit_failure(e: Exception, repo_id: str) -> str:
    """A failed commit in words (``HTTP 503``, ``ReadError``) when re-reading and retrying can help.

    What no retry fixes is one :class:`HubError` line: no write access, a change or card the Hub rejects. Anything
    that is neither is a bug and propagates.
    """
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(e, HfHubHTTPError):
        status = e.response.status_code if e.response is not None else None
        if status in (401, 403):
            raise HubError(
                f"The Hub refused the commit to {repo_id} ({status}): the token cannot write to this repo."
            ) from None
        if status not in (408, 409, 412, 429) and (status is None or status < 500):
            raise HubError(f"The Hub rejected the commit to {repo_id} ({status}): {_reason(e)}") from None
        return f"HTTP {status}"
    if isinstance(e, ValueError) and "metadata" in str(e):  # huggingface_hub checks a card's YAML before uploading
        reasons = " ".join(line.strip("- ") for line in str(e).splitlines()[1:] if line.strip())
        raise HubError(
            f"The Hub rejected the card (README.md) for {repo_id}: {reasons or e}; fix its YAML metadata."
        ) from None
    if _is_connection_failure(e):
        return type(e).__name__
    raise e


def _check_token(api) -> None:
    from huggingface_hub.errors import HfHubHTTPError

    try:
        api.whoami()
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        if status == 401:
            raise HubError(
                "The Hub rejected the token (401): check --token / HF_TOKEN or run `hf auth login`."
            ) from None
        raise HubError(f"Could not check the token with the Hub ({status}): {_reason(e)}") from None
    except ValueError as e:  # a reply that is not JSON: not a Hub, or a proxy's error page
        raise HubError(
            f"The Hub at {_endpoint()} answered whoami with something that is not JSON ({e}); check HF_ENDPOINT."
        ) from None
    except Exception as e:
        if _is_connection_failure(e):
            raise HubError(f"Cannot reach the Hub at {_endpoint()} ({type(e).__name__}); check the network.") from None
        raise


def _call(fn, what: str, log):
    """``fn()`` with bounded, logged retries on 5xx/429 and transport errors."""
    from huggingface_hub.errors import HfHubHTTPError

    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return fn()
        except HfHubHTTPError as e:
            status = e.response.status_code if e.response is not None else None
            if not (status in (408, 429) or (status or 0) >= 500) or attempt == MAX_ATTEMPTS:
                raise HubError(f"Could not {what} ({status}): {_reason(e)}") from None
            failure = f"HTTP {status}"
        except Exception as e:
            if not _is_connection_failure(e):
                raise
            if attempt == MAX_ATTEMPTS:
                raise HubError(f"Could not {what}: {type(e).__name__} from {_endpoint()}.") from None
            failure = type(e).__name__
        _back_off(attempt, f"Could not {what} ({failure})", "", log)


def _back_off(attempt: int, failed: str, then: str, log: Callable[[str], None]) -> None:
    """Say what failed and how long we wait, then wait: :data:`BACKOFF_S`, doubling with each attempt."""
    wait = BACKOFF_S * 2 ** (attempt - 1)
    log(f"{failed}, attempt {attempt}/{MAX_ATTEMPTS}; {then}retrying in {wait:.0f} s.")
    time.sleep(wait)


def _is_connection_failure(e: BaseException) -> bool:
    """Refused, reset, dropped or timed out: the HTTP client's transport errors and the OS's own."""
    return isinstance(e, (OSError, ConnectionError, TimeoutError)) or _is_transport_error(e)


def _is_transport_error(e: BaseException) -> bool:
    """A connection-level failure (refused, reset, dropped mid-response, timed out) of huggingface_hub's HTTP client.

    huggingface_hub 2.x ships its HTTP client as ``httpx2`` (1.x used ``httpx``); both name the base class
    ``TransportError``, so match on that rather than on one package's import path.
    """
    return any(
        cls.__name__ == "TransportError" and cls.__module__.split(".")[0] in ("httpx", "httpx2")
        for cls in type(e).__mro__
    )


def _reason(e, limit: int = 500) -> str:
    """The server's whole message on one line, with anything that looks like a token redacted."""
    text = " ".join(str(e).split()) or type(e).__name__
    return redact(text if len(text) <= limit else text[:limit] + " ...")


def redact(text: str) -> str:
    """``text`` with Hugging Face tokens (``hf_...``) and any ``Bearer`` credential replaced by ``***``."""
    text = re.sub(r"(?i)(bearer\s+)[^\s,;\"']+", r"\1***", text)
    return re.sub(r"hf_[A-Za-z0-9]{16,}", "hf_***", text)  # real tokens: hf_ + 34 letters and digits


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT
