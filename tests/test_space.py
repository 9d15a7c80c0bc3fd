"""`hf-fmnist push-space`: the demo as a Space on the test Hub, the generated app run on its own, the card link."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_demo import confidences, expected, serve, stop, tiny_model

from hf_fmnist.hub import push as publish
from hf_fmnist.hub.space import DEMO_END, DEMO_START, package_files, push_space, with_demo_block

from conftest import HUB_USER, real_data, unique_repo

gradio = pytest.importorskip("gradio", reason="needs the 'demo' extra")
OTHER_USER, OTHER_TOKEN = "someone-else", "hf_othertoken0123456789abcdef"
PACKAGE = Path(publish.__file__).parent
# Run code in the downloaded Space as the Space would: an editable install of this checkout (pip install -e) adds an
# import hook that would quietly supply any module missing from the Space, so drop it first.
ISOLATED = (
    "import runpy, sys; sys.meta_path[:] = [f for f in sys.meta_path "
    "if not getattr(f, '__module__', '').startswith('__editable__')]; "
)
CARD = """---
license: mit
---

# A model

## Usage

```python
## not a heading: inside a code block
from transformers import pipeline
```

### Details

More usage.

## Limitations

Some.
"""


def _quiet(message: str) -> None:
    pass


def push_card(model_id: str, folder: Path, **kwargs) -> None:
    """The tiny model with its hand-written card, as is (push-model would render a card from training results)."""
    publish.push_folder(model_id, folder, repo_type="model", log=_quiet, **kwargs)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tiny_model(tmp_path_factory.mktemp("space") / "model")
    (folder / "README.md").write_text(CARD)
    return folder


@real_data
def test_push_space_holds_exactly_the_app_and_links_the_model(hub, model_dir, tmp_path):
    """Catches a Space with missing or extra files, code that differs from the installed demo, wrong Space metadata,
    a re-push that commits again, and a card link that is missing, misplaced or duplicated."""
    model_id, space_id = unique_repo("model"), unique_repo("demo")
    push_card(model_id, model_dir)
    model_commits = hub.state.commit_count("model", model_id)

    result = push_space(space_id, model_id, log=_quiet)
    assert result["changed"] and result["card_linked"]
    files = hub.state.files("space", space_id)
    examples = sorted(p for p in files if p.startswith("examples/"))
    assert len(examples) == 10 and all(p.endswith(".png") for p in examples)
    assert set(files) == {
        ".gitattributes",
        "app.py",
        "requirements.txt",
        "README.md",
        *examples,
        *package_files(),
    }
    assert {"hf_fmnist/inference/demo.py", "hf_fmnist/core/models.py", "hf_fmnist/errors.py"} <= set(files)
    assert not any(
        path.startswith(("hf_fmnist/training/", "hf_fmnist/hub/")) or path == "hf_fmnist/cli.py" for path in files
    )
    for path, source in package_files().items():  # the same code as `hf-fmnist demo`, byte for byte
        assert files[path] == source.read_bytes()
    assert f"main_space({model_id!r})" in files["app.py"].decode()
    meta = yaml.safe_load(files["README.md"].decode().split("---")[1])
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gradio.__version__ and meta["app_file"] == "app.py"
    assert meta["models"] == [model_id] and meta["title"] and meta["emoji"]
    requirements = files["requirements.txt"].decode().split()
    assert [r.split(">")[0].split("=")[0] for r in requirements] == ["torch", "transformers", "numpy", "pillow"]

    card = hub.state.files("model", model_id)["README.md"].decode()
    assert card.count(DEMO_START) == 1 and card.count(DEMO_END) == 1
    assert card.index("### Details") < card.index(DEMO_START) < card.index("## Limitations")
    assert f"{result['url']}" in card and result["url"].endswith(f"/spaces/{space_id}")
    assert hub.state.commit_count("model", model_id) == model_commits + 1

    space_commits = hub.state.commit_count("space", space_id)
    again = push_space(space_id, model_id, log=_quiet)
    assert not again["changed"] and again["commit"] is None and again["card_linked"]
    assert hub.state.commit_count("space", space_id) == space_commits
    assert hub.state.commit_count("model", model_id) == model_commits + 1


@real_data
def test_generated_space_app_runs_on_its_own(hub, model_dir, tmp_path):
    """Download the Space and run its app.py in a clean folder against the test Hub: it must load the model from the
    Hub and classify like `hf-fmnist predict` with only the files the Space holds (catches a module missing from
    the parts it copies, an app.py that does not start, examples that do not load)."""
    from gradio_client import Client, handle_file
    from huggingface_hub import snapshot_download

    model_id, space_id = unique_repo("model"), unique_repo("demo")
    push_card(model_id, model_dir)
    push_space(space_id, model_id, log=_quiet)
    space = Path(snapshot_download(space_id, repo_type="space", local_dir=tmp_path / "space"))
    probe = "import hf_fmnist.inference.demo as d; print(d.__file__); import hf_fmnist.training.loop"
    where = subprocess.run(
        [sys.executable, "-c", ISOLATED + probe], cwd=space, capture_output=True, text=True, timeout=120
    )
    assert (
        Path(where.stdout.split()[0]).resolve() == (space / "hf_fmnist" / "inference" / "demo.py").resolve()
    )  # the copy
    assert "No module named 'hf_fmnist.training'" in where.stderr  # and nothing from this checkout

    url, process = serve(
        [sys.executable, "-c", ISOLATED + "runpy.run_path('app.py', run_name='__main__')"], space, tmp_path / "app.log"
    )
    try:
        example = sorted((space / "examples").glob("*.png"))[0]
        label, _, _ = Client(url, verbose=False).predict(handle_file(str(example)), False, api_name="/classify")
    finally:
        stop(process)
    assert confidences(label) == pytest.approx(expected(model_dir, example), abs=1e-6)


@real_data
def test_push_space_without_write_access_to_the_model_still_publishes(hub, model_dir):
    """The token may publish the Space but not edit someone else's model card: one line, no failure, no card commit."""
    model_id, space_id = unique_repo("model", OTHER_USER), unique_repo("demo")
    push_card(model_id, model_dir, token=OTHER_TOKEN)
    commits = hub.state.commit_count("model", model_id)
    lines: list[str] = []
    result = push_space(space_id, model_id, log=lines.append)
    assert result["changed"] and not result["card_linked"]
    assert hub.state.commit_count("model", model_id) == commits
    refused = [line for line in lines if "model card" in line]
    assert len(refused) == 1 and "cannot write" in refused[0] and "\n" not in refused[0]


def test_push_space_refuses_a_model_the_hub_does_not_have(hub):
    from hf_fmnist.errors import HfFmnistError

    space_id = unique_repo("demo")
    with pytest.raises(HfFmnistError, match="not found on the Hub.*push-model"):
        push_space(space_id, f"{HUB_USER}/no-such-model", log=_quiet)
    assert ("space", space_id) not in hub.state.repos  # nothing created


def test_demo_block_is_inserted_after_usage_and_replaced_in_place():
    """Catches a block put inside a code fence or a subsection, a second block on re-link, and lost card text."""
    first = with_demo_block(CARD, "me/demo", "https://hf.co/spaces/me/demo")
    assert first.index("More usage.") < first.index(DEMO_START) < first.index("## Limitations")
    assert first.replace(first[first.index(DEMO_START) : first.index(DEMO_END) + len(DEMO_END)] + "\n\n", "") == CARD
    assert with_demo_block(first, "me/demo", "https://hf.co/spaces/me/demo") == first
    moved = with_demo_block(first, "me/demo2", "https://hf.co/spaces/me/demo2")
    assert moved.count(DEMO_START) == 1 and "spaces/me/demo2" in moved and "spaces/me/demo)" not in moved
    assert with_demo_block("# No usage here\n", "me/demo", "u").endswith(f"{DEMO_END}\n")
    assert with_demo_block(None, "me/demo", "u") is None
