"""hf-fmnist audit on a small learnable dataset with planted exact duplicates, near duplicates and label flips: each
must be found, by identity; the same dataset without them must report none."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hf_fmnist import CLASS_NAMES, cli
from hf_fmnist.data import duplicates

from learnable import export_arrays, learnable_arrays

TRAIN, TEST = 300, 60
FLIPS = [11, 57, 102, 150, 201, 263]  # train images whose label is planted wrong (shifted by 5 classes)


def _clean():
    rng = np.random.default_rng(3)
    return {"train": learnable_arrays(TRAIN, rng), "test": learnable_arrays(TEST, rng)}


def _planted():
    arrays = _clean()
    train, train_labels = arrays["train"][0].copy(), arrays["train"][1].copy()
    test, test_labels = arrays["test"][0].copy(), arrays["test"][1].copy()
    train[40] = train[5]  # an exact copy inside train, same label
    train_labels[40] = train_labels[5]
    test[3] = train[77]  # an exact copy across splits, with a disagreeing label
    test_labels[3] = (train_labels[77] + 1) % 10
    noise = np.random.default_rng(9).integers(-3, 4, size=(28, 28))
    test[7] = np.clip(train[120].astype(int) + noise, 0, 255)  # a near copy: RMS about 2 gray levels
    test_labels[7] = train_labels[120]
    train_labels[FLIPS] = (train_labels[FLIPS] + 5) % 10
    return {"train": (train, train_labels), "test": (test, test_labels)}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return export_arrays(tmp_path_factory.mktemp("planted"), _planted())


def _audit(dataset, out, *extra) -> dict:
    assert cli.main(["audit", "--dataset", dataset, "--output-dir", str(out), *extra]) == 0
    return json.loads((out / "audit.json").read_text())


def test_planted_duplicates_are_found_with_their_labels(planted, tmp_path, capsys):
    result = _audit(planted, tmp_path / "report", "--skip-labels")
    arrays = _planted()
    exact = result["exact"]
    assert exact["groups"] == [
        {"splits": ["train", "train"], "indices": [5, 40], "labels": [int(arrays["train"][1][5])] * 2},
        {
            "splits": ["train", "test"],
            "indices": [77, 3],
            "labels": [int(arrays["train"][1][77]), int(arrays["test"][1][3])],
        },
    ]
    assert exact["within"] == {"train": {"groups": 1, "extra_copies": 1}, "test": {"groups": 0, "extra_copies": 0}}
    assert exact["groups_across_splits"] == 1 and exact["groups_with_disagreeing_labels"] == 1
    near = result["near"]["per_split"]["test"]
    # within T: the exact cross-split copy (test 3) and the planted near copy (test 7), nothing else
    assert near["exact_copies"] == 1 and near["within_threshold"] == 2
    assert near["label_disagreements_within_threshold"] == 1
    first_two = result["near"]["nearest_pairs"][:2]
    assert [(p["index"], p["train_index"]) for p in first_two] == [(3, 77), (7, 120)]
    for name in ("report.md", "exact_duplicates.png", "near_duplicates.png", "near_distances.png"):
        assert (tmp_path / "report" / name).is_file()
    printed = capsys.readouterr().out
    assert "Near duplicates within RMS 10 of a train image: test 2 of 60" in printed


def test_a_clean_dataset_reports_no_duplicates(tmp_path):
    result = _audit(export_arrays(tmp_path / "clean", _clean()), tmp_path / "report", "--skip-labels")
    assert result["exact"]["groups"] == [] and result["exact"]["groups_across_splits"] == 0
    assert result["near"]["per_split"]["test"]["within_threshold"] == 0


@pytest.mark.slow
def test_planted_label_flips_are_found_and_the_search_resumes(planted, tmp_path, capsys):
    """Three folds, each trained by train() on the other two, for a few dozen steps. Their out-of-fold predictions
    disagree with the given label on exactly the planted flips, which cleanlab's predicted_neq_given rule returns,
    with the clean labels as suggestions. Its default (confident learning) may miss flips whose probabilities are as
    unsure as these tiny models are, but must not name an image that was not flipped. A second run after a fold's
    file is removed (a stop between folds) recomputes only that fold; another k cannot reuse the folds."""
    args = ("--folds", "3", "--num-train-epochs", "5", "--per-device-train-batch-size", "16")
    result = _audit(planted, tmp_path / "report", *args, "--filter-by", "predicted_neq_given")
    labels = result["labels"]
    assert sorted(s["index"] for s in labels["suspects"]) == FLIPS
    assert labels["out_of_fold_accuracy"] == TRAIN - len(FLIPS)
    clean_labels = _clean()["train"][1]
    by_index = {s["index"]: s for s in labels["suspects"]}
    assert [by_index[i]["suggested"] for i in FLIPS] == [CLASS_NAMES[clean_labels[i]] for i in FLIPS]
    assert [by_index[i]["given"] for i in FLIPS] == [CLASS_NAMES[(clean_labels[i] + 5) % 10] for i in FLIPS]
    assert (tmp_path / "report" / "label_issues.png").is_file()
    search = tmp_path / "report" / "label_search"
    stored = {p.name: p.read_bytes() for p in search.glob("fold_*.npz")}
    assert sorted(stored) == ["fold_0.npz", "fold_1.npz", "fold_2.npz"]
    assert not list(search.glob(".fold_*"))  # each fold's training folder removed once its probabilities are stored
    (search / "fold_1.npz").unlink()
    again = _audit(planted, tmp_path / "report", *args)  # the default rule, on the stored folds plus a new fold 1
    assert (search / "fold_0.npz").read_bytes() == stored["fold_0.npz"]  # not recomputed
    found = [s["index"] for s in again["labels"]["suspects"]]
    assert found and set(found) <= set(FLIPS)
    assert cli.main(["audit", "--dataset", planted, "--output-dir", str(tmp_path / "report"), "--folds", "4"]) == 2
    assert "another label search" in capsys.readouterr().err


def test_nearest_is_exact_in_blocks_of_any_size():
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    queries = rng.integers(0, 256, (17, 28, 28), dtype=np.uint8)
    expected = np.array([[duplicates.rms_distance(q[None], p[None])[0] for p in pool] for q in queries])
    for budget in (1, 12 * 50 * 5, 1 << 30):  # one row per block, five, all
        found, distance = duplicates.nearest(queries, pool, budget_bytes=budget)
        assert found.tolist() == expected.argmin(1).tolist()
        assert distance.tolist() == expected.min(1).tolist()


def test_the_output_folder_must_be_new_or_an_earlier_audit(planted, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert cli.main(["audit", "--dataset", planted, "--output-dir", str(tmp_path), "--skip-labels"]) == 2
    assert "did not write" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_the_dataset_card_shows_the_measured_known_issues(tmp_path, capsys):
    """build --audit: the counts of an audit of this very data, and the method; nothing for other data or without
    --audit; a malformed stored result is one line."""
    from learnable import export_arrays as export_planted

    dataset = export_planted(tmp_path / "planted", _planted())
    report = tmp_path / "report"
    stored = _audit(dataset, report, "--skip-labels")
    stored["labels"] = {  # as a label search stores it (its own test runs the search)
        "method": "cleanlab.filter.find_label_issues (filter_by=prune_by_noise_rate) on ...",
        "split": "train",
        "k": 5,
        "recipe": "cpu-5min",
        "images": 300,
        "issues": 6,
        "seconds": 125.0,
    }
    (report / "audit.json").write_text(json.dumps(stored))
    raw = str(tmp_path / "planted" / "raw")
    build = ["build", "--data-dir", raw, "--no-verify", "--output-dir"]
    assert cli.main([*build, str(tmp_path / "plain")]) == 0
    assert "Known issues" not in (tmp_path / "plain" / "README.md").read_text()
    assert cli.main([*build, str(tmp_path / "with"), "--audit", str(report)]) == 0
    card = (tmp_path / "with" / "README.md").read_text()
    section = card[card.index("## Known issues") : card.index("## Source")]
    assert (
        "1 extra copy within `train`; 0 extra copies within `test`;\n  1 image(s) shared across splits; 1 of them"
        in section
    )
    assert (
        "at most 10): 2 of 60 `test` images\n  (1 exact copies; 2 within 5, 60 within 20),\n  1 with a different label."
        in section
    )
    assert (
        "6 of 300 `train` images flagged" in section and "5-fold cross-validation with the `cpu-5min` recipe" in section
    )
    assert "about 2 min" in section
    capsys.readouterr()
    # other data: the clean dataset's audit does not describe the planted one
    clean = _audit(export_planted(tmp_path / "clean", _clean()), tmp_path / "clean_report", "--skip-labels")
    assert clean["fingerprint"] != stored["fingerprint"]
    assert cli.main([*build, str(tmp_path / "other"), "--audit", str(tmp_path / "clean_report")]) == 2
    assert "measured other data" in capsys.readouterr().err
    stored["labels"]["issues"] = "many"
    (report / "audit.json").write_text(json.dumps(stored))
    assert cli.main([*build, str(tmp_path / "bad"), "--audit", str(report)]) == 2
    assert "malformed audit result" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_the_command_line_default_threshold_is_the_documented_one():
    args = cli.build_parser().parse_args(["audit", "--output-dir", "x"])
    assert args.threshold == duplicates.NEAR_THRESHOLD and args.folds == 5 and args.recipe == "cpu-5min"
