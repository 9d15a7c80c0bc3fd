"""The dataset card: the ``README.md`` of an exported folder, rendered from ``model_card/dataset_card.md``.

A card is rendered for the repo it goes to. The folder's card loads the folder itself (``"."``); a push renders
the card for its repo into what is uploaded (:func:`dataset_card_for_repo`), leaving the folder as it is. Rendering
is deterministic, so re-pushing the same folder to the same repo uploads the same bytes.
"""

from __future__ import annotations

import re
import reprlib
from importlib import resources

from ..errors import printable

TEMPLATES = "hf_fmnist.model_card"
LOCAL = "."  # what a card's snippets load before a push: the folder holding the card


def template_path(name: str) -> str:
    """Filesystem path of a card template shipped with the package."""
    return str(resources.files(TEMPLATES).joinpath(name))


def dataset_card(
    dataset, info, counts: dict, *, repo_id: str = LOCAL, verified: bool = True, issues: dict | None = None
):
    """The ``README.md`` of an exported Fashion-MNIST folder: YAML as push_to_hub writes it, plus a full body.

    ``dataset`` is the ``DatasetDict``; ``info`` a ``DatasetInfo`` whose splits and sizes describe the written
    Parquet files; ``counts`` the examples per class of each split, computed from the labels
    (``tensors.class_counts``), not assumed. ``repo_id``: the Hub dataset repo the
    card's snippet loads; default ``"."`` (the folder itself), replaced by :func:`dataset_card_for_repo` on push.
    ``issues``: the checked view of an audit of this data (``known_issues.read_audit``), shown as "Known issues".
    """
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    from ..dataset_script.hf_fmnist import CITATION, DESCRIPTION, HOMEPAGE
    from . import idx

    names = dataset[next(iter(dataset))].features["label"].names
    num_rows = sum(len(ds) for ds in dataset.values())
    card_data = DatasetCardData(
        pretty_name="Fashion-MNIST",
        license="mit",
        language=["en"],
        task_categories=["image-classification"],
        task_ids=["multi-class-image-classification"],
        size_categories=[_size_category(num_rows)],
        language_creators=["found"],
        annotations_creators=["expert-generated"],
        source_datasets=["original"],
        paperswithcode_id="fashion-mnist",
    )
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    data_files = [{"split": split, "path": f"data/{split}-*"} for split in dataset]
    MetadataConfigs({"default": {"data_files": data_files}}).to_dataset_card_data(card_data)
    return DatasetCard.from_template(
        card_data,
        template_path=template_path("dataset_card.md"),
        pretty_name="Fashion-MNIST",
        description=DESCRIPTION.strip(),
        usage=_dataset_usage(repo_id),
        first_label_name=names[int(dataset[next(iter(dataset))].data.column("label")[0].as_py())],
        splits=list(info.splits.values()),
        class_rows=[
            {"id": i, "name": name, "counts": [int(c[i]) for c in counts.values()]} for i, name in enumerate(names)
        ],
        homepage=HOMEPAGE,
        checksums=idx.SHA256 if verified else {},
        license_text="MIT, as the original release (Copyright (c) 2017 Zalando SE).",
        citation=CITATION.strip(),
        issues=issues,
    )


def _dataset_usage(repo_id: str) -> str:
    """The line of the dataset card that loads the data: from the folder itself, or from its Hub repo."""
    if repo_id == LOCAL:
        return 'ds = load_dataset(".")   # run in this folder; `hf-fmnist push-dataset` puts the repo id here'
    return f'ds = load_dataset("{repo_id}")'


def dataset_card_for_repo(text: str, repo_id: str) -> str:
    """The dataset card ``text`` (a folder's README.md) with its snippet loading ``repo_id``.

    Only the line :func:`dataset_card` wrote for local use is replaced; a card without it (edited by hand) is
    returned unchanged. A card already rendered for another repo is re-rendered for this one.
    """
    local = _dataset_usage(LOCAL)
    if local in text:
        return text.replace(local, _dataset_usage(repo_id))
    return re.sub(r'^ds = load_dataset\("[^"\n]*"\)$', lambda m: _dataset_usage(repo_id), text, count=1, flags=re.M)


def _size_category(n: int) -> str:
    """The Hub's size_categories bucket for ``n`` rows."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    return next((label for bound, label in bounds if n < bound), "1M<n<10M")


# The read-back schema of a dataset card's YAML metadata: what ``datasets.load_dataset`` takes from a folder's card
# and this package reads (``configs``). Strangers' cards are read too (a folder anyone may hand over), so each
# value's type and size is checked before the first use; a later field the package reads is added here.
MAX_METADATA_BYTES = 1 << 20  # a dataset card's README.md (ours is about 5 KB) or a .huggingface.yaml
MAX_CONFIGS = 100
MAX_DATA_FILES = 1000
MAX_STRING = 1000
_SHORT = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 3, 3, 40, 40


def card_configs(metadata, card) -> list[dict]:
    """The card's ``configs``, each an object whose ``data_files`` are a pattern, a list of patterns, or a list of
    ``{split, path}`` objects (as ``datasets`` accepts them); one line naming the card and the field otherwise."""
    from ..errors import HfFmnistError, printable

    def refuse(field: str, value, expected: str) -> HfFmnistError:
        shown = printable(_SHORT.repr(value))[:60]  # bounded: YAML aliases can nest a billion strings in a few bytes
        return HfFmnistError(f"{card}: metadata field {field} must be {expected}, not {shown}; refused.")

    if metadata is None:
        return []
    if not isinstance(metadata, dict):
        raise refuse("(the whole YAML block)", metadata, "an object")
    configs = metadata.get("configs", [])
    if not isinstance(configs, list) or len(configs) > MAX_CONFIGS:
        raise refuse("configs", configs, f"a list of at most {MAX_CONFIGS} objects")
    for i, config in enumerate(configs):
        where = f"configs[{i}]"
        if not isinstance(config, dict):
            raise refuse(where, config, "an object")
        for key, value in config.items():
            if key == "data_files":
                _check_data_files(value, f"{where}.data_files", refuse)
            elif not _is_scalar(value):  # config_name, data_dir, default and builder options: plain values
                raise refuse(f"{where}.{printable(str(key))[:40]}", value, "a string, number or boolean")
    return configs


def check_card_classes(metadata, card) -> None:
    """Refuse a card whose ``dataset_info`` names more classes than ``image_limits.MAX_CLASSES``, from the YAML
    already read (before ``datasets`` parses the card again and builds a ClassLabel of them)."""
    from ..image_limits import check_classes

    infos = metadata.get("dataset_info") if isinstance(metadata, dict) else None
    for info in infos if isinstance(infos, list) else [infos]:
        features = info.get("features") if isinstance(info, dict) else None
        for feature in features if isinstance(features, list) else []:
            dtype = feature.get("dtype") if isinstance(feature, dict) else None
            label = dtype.get("class_label") if isinstance(dtype, dict) else None
            names = label.get("names") if isinstance(label, dict) else None
            if isinstance(names, (list, dict)):
                check_classes(len(names), f"{card}: dataset_info feature {printable(str(feature.get('name')))[:40]!r}")


def _check_data_files(value, where: str, refuse) -> None:
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, list) or not 0 < len(entries) <= MAX_DATA_FILES:
        raise refuse(where, value, f"a path pattern or a list of at most {MAX_DATA_FILES}")
    for j, entry in enumerate(entries):
        if isinstance(entry, dict):
            split, paths = entry.get("split"), entry.get("path")
            paths = [paths] if isinstance(paths, str) else paths
            if set(entry) - {"split", "path"} or not _is_string(split) or not isinstance(paths, list):
                raise refuse(f"{where}[{j}]", entry, "an object of split and path")
            if not 0 < len(paths) <= MAX_DATA_FILES or not all(map(_is_string, paths)):
                raise refuse(f"{where}[{j}].path", entry["path"], "a path pattern or a list of them")
        elif not _is_string(entry):
            raise refuse(f"{where}[{j}]", entry, "a path pattern or an object of split and path")


def _is_string(value) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_STRING


def _is_scalar(value) -> bool:
    return (
        value is None or isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= MAX_STRING)
    )


def read_metadata(path, shown=None):
    """The YAML metadata of a card (its front matter) or of a ``.huggingface.yaml`` (the whole file), None if
    absent; one line otherwise. ``shown``: the path the line names (a push reads a private copy of the card)."""
    from pathlib import Path

    import yaml
    from huggingface_hub import metadata_load

    from ..errors import HfFmnistError, one_line

    path = Path(path)
    shown = shown or path
    try:
        if not path.is_file():
            return None
        if path.stat().st_size > MAX_METADATA_BYTES:
            raise HfFmnistError(f"{shown} is {path.stat().st_size:,} bytes, more than dataset metadata; refused.")
        if path.name == "README.md":
            return metadata_load(path)
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise HfFmnistError(f"{shown}: cannot read it ({e.strerror}).") from None
    except (ValueError, yaml.YAMLError, RecursionError) as e:  # a bad card's YAML: ValueError from metadata_load
        raise HfFmnistError(f"{shown}: its YAML metadata cannot be read ({one_line(e, 150)}).") from None


def config_paths(configs: list[dict]) -> list[tuple[str, bool]]:
    """Every path that checked ``configs`` (:func:`card_configs`) give ``datasets``, in order: ``(data_dir, True)``
    for a folder it reads from, ``(pattern, False)`` for each ``data_files`` pattern."""
    paths: list[tuple[str, bool]] = []
    for config in configs:
        if config.get("data_dir") is not None:
            paths.append((str(config["data_dir"]), True))
        files = config.get("data_files", [])
        for entry in [files] if isinstance(files, str) else files:
            named = entry["path"] if isinstance(entry, dict) else entry
            paths += [(p, False) for p in ([named] if isinstance(named, str) else named)]
    return paths
