"""The ``hf-fmnist`` command. Subcommands import their heavy dependencies only when they run."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .errors import HfFmnistError, error_line, printable

DEFAULT_SPACE_NAME = "fashion-mnist-demo"  # push-space without --repo-id: <your namespace>/fashion-mnist-demo


def _build(args: argparse.Namespace) -> None:
    import time

    from .data.export import export

    start = time.perf_counter()
    folder = export(args.output_dir, data_dir=args.data_dir, verify=not args.no_verify, audit=args.audit)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    took = time.perf_counter() - start
    print(f"Wrote {printable(str(folder))} ({len(files)} files, {size / 1e6:.1f} MB) in {took:.1f} s")
    for p in files:
        print(f"  {p.relative_to(folder)}  {p.stat().st_size:,} bytes")
    print(f"Load it with: datasets.load_dataset({printable(repr(str(folder)))})")


def _summary(args: argparse.Namespace) -> None:
    from .data.summary import print_summary
    from .data.tensors import local_root, open_dataset

    if args.map:
        from .data.maps import require_method

        require_method(args.map_method, "summary --map")
    dataset = open_dataset(args.dataset, data_dir=args.data_dir, verify=not args.no_verify)
    print_summary(dataset, grid=args.grid, root=local_root(args.dataset))
    if args.map:
        from .data.summary import pixel_map

        pixel_map(dataset, args.map, method=args.map_method, split=args.split, root=local_root(args.dataset))


def _embed(args: argparse.Namespace) -> None:
    from .errors import printable
    from .inference.embed import embed_model

    result = embed_model(
        args.model,
        args.output_dir,
        dataset=args.dataset,
        split=args.split,
        method=args.method,
        thumbnails=args.thumbnails,
        max_samples=args.max_samples,
        data_dir=args.data_dir,
        seed=args.seed,
    )
    out = printable(result["output_dir"])
    print(
        f"Mapped {result['images']:,} images' {result['features']}-dimensional pooled features with {args.method}: "
        f"{out}/map.png, {out}/map.csv; projector: tensorboard --logdir {out}/projector"
    )


def _evaluate(args: argparse.Namespace) -> None:
    from .inference.evaluate import evaluate_model, format_report

    results = evaluate_model(
        args.model,
        args.dataset,
        split=args.split,
        output_dir=args.output_dir,
        batch_size=args.batch_size,
        max_eval_samples=args.max_eval_samples,
        data_dir=args.data_dir,
    )
    print(format_report(results))


def _predict(args: argparse.Namespace) -> int:
    """Print each batch's results as soon as it is classified.

    ``--json`` prints exactly ``json.dumps(results, indent=2)``, streamed.
    """
    import json
    import textwrap

    from .inference.predict import format_result, iter_predict

    total = failed = 0
    for result in iter_predict(args.model, args.paths, top_k=args.top_k):
        if args.json:
            print(("[\n" if total == 0 else ",\n") + textwrap.indent(json.dumps(result, indent=2), "  "), end="")
        else:
            print(format_result(result))
        total += 1
        failed += "error" in result
        sys.stdout.flush()
    if args.json:
        print("\n]")
    if failed:
        print(f"{failed} of {total} file(s) could not be classified", file=sys.stderr)
    return 1 if failed else 0


def _push_dataset(args: argparse.Namespace) -> None:
    import tempfile

    from .hub.push import push_dataset

    if args.dataset_dir and args.audit:
        raise HfFmnistError(
            "--audit applies when push-dataset builds the export; for --dataset-dir, build it with "
            "`hf-fmnist build --audit REPORT`."
        )
    if args.dataset_dir:
        url = push_dataset(args.repo_id, args.dataset_dir, **_push_kwargs(args))
    else:
        from .data.export import export

        with tempfile.TemporaryDirectory() as tmp:
            folder = export(f"{tmp}/dataset", data_dir=args.data_dir, audit=args.audit)
            url = push_dataset(args.repo_id, folder, **_push_kwargs(args))
    print(f"{'Pull request' if '/discussions/' in url else 'Dataset'} at {url}")


def _push_model(args: argparse.Namespace) -> None:
    from .hub.push import push_model

    url = push_model(args.repo_id, args.model_dir, **_push_kwargs(args))
    print(f"{'Pull request' if '/discussions/' in url else 'Model'} at {url}")


def _demo(args: argparse.Namespace) -> None:
    import tempfile

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local demo
    from .extras import require
    from .inference.demo import Classifier, build_app, launch, write_examples

    require("gradio", extra="demo", command="demo")  # before loading the model: fail fast
    classifier = Classifier(args.model)
    with tempfile.TemporaryDirectory(prefix="hf_fmnist-demo-") as examples:
        try:
            write_examples(examples, data_dir=args.data_dir)
        except HfFmnistError as e:  # the demo works without them
            print(f"Examples left out: the Fashion-MNIST test images are not available ({e})", file=sys.stderr)
        app = build_app(args.model, examples_dir=examples, classifier=classifier)
        launch(
            app,
            host="0.0.0.0" if args.host else "127.0.0.1",
            port=args.port,
            share=args.share,
            allowed_paths=[examples],
        )


def _push_space(args: argparse.Namespace) -> None:
    from .hub.space import push_space

    result = push_space(
        args.repo_id,
        args.model,
        data_dir=args.data_dir,
        default_name=DEFAULT_SPACE_NAME,
        static=args.static,
        **_push_kwargs(args),
    )
    print(f"{'Pull request' if args.create_pr else 'Space'} at {result.get('pr_url') or result['url']}")


def _export(args: argparse.Namespace) -> None:
    from .inference.onnx import export_onnx, format_report

    report = export_onnx(
        args.model,
        args.output,
        data_dir=args.data_dir,
        max_samples=args.max_test_images,
        dtypes=args.dtypes,
        for_browser=args.for_browser,
    )
    print(format_report(report))


def _export_dtypes(text: str) -> tuple[str, ...]:
    from .core.export_record import DTYPES

    dtypes = tuple(d.strip() for d in text.split(","))
    if not set(dtypes) <= set(DTYPES) or "fp32" not in dtypes:
        raise argparse.ArgumentTypeError(f"a comma-separated list of {', '.join(DTYPES)} that includes fp32")
    return dtypes


def _gray_levels(text: str) -> float:
    """A near-duplicate threshold: a finite RMS distance in gray levels, more than 0 and at most 255."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 255):
        raise argparse.ArgumentTypeError("a number of gray levels, more than 0 and at most 255")
    return value


def _count(text: str) -> int:
    """A whole number from 0 to 1,000,000."""
    return 0 if text.strip() == "0" else _positive_int(text)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError("a whole number from 1 to 1,000,000")
    return value


def _audit(args: argparse.Namespace) -> int:
    from .training.audit import run_audit
    from .training.label_search import SearchPlan
    from .training.preemption import EXIT_PREEMPTED, Preempted

    plan = None
    if not args.skip_labels:
        from .extras import require

        require("cleanlab", extra="audit", command="audit")  # before hours of folds, not after
        plan = SearchPlan(
            k=args.folds,
            recipe=args.recipe,
            seed=args.seed,
            num_train_epochs=args.num_train_epochs,
            per_device_train_batch_size=args.per_device_train_batch_size,
            model_name_or_path=args.model,
        )
    try:
        run_audit(
            args.output_dir,
            dataset=args.dataset,
            data_dir=args.data_dir,
            threshold=args.threshold,
            plan=plan,
            label_split=args.label_split,
            filter_by=args.filter_by,
        )
    except Preempted as e:  # a fold's training was stopped: its checkpoint and the finished folds are kept
        print(f"{printable(str(e))}\nRun the same audit command again to resume the label search.", file=sys.stderr)
        return EXIT_PREEMPTED
    print(f"Report in {args.output_dir} (report.md, audit.json and the grids)")
    return 0


def _push_kwargs(args: argparse.Namespace) -> dict:
    return {
        "token": args.token,
        "private": args.private,
        "revision": args.revision,
        "commit_message": args.commit_message,
        "create_pr": args.create_pr,
    }


def _add_push_flags(parser: argparse.ArgumentParser, default_name: str) -> None:
    parser.add_argument(
        "--repo-id", help=f"NAMESPACE/NAME of the repo (created if missing); default: YOUR_NAMESPACE/{default_name}"
    )
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--revision", help="branch to push to (default: main; created if missing)")
    parser.add_argument("--commit-message", help="default: 'Upload FOLDER with hf_fmnist'")
    parser.add_argument(
        "--create-pr",
        action="store_true",
        help="open a pull request instead of committing (reuses an open one of yours that holds the same content)",
    )
    parser.add_argument("--token", help="Hub token with write access; default: $HF_TOKEN or the stored login")


def _add_source_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        help="folder with the four raw Fashion-MNIST files (.gz or not); default: $HF_FMNIST_DATA_DIR, "
        "/usr/share/datasets/fashion-mnist, else download from the official mirrors",
    )
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="accept raw files whose sha256 differs from the original release (deliberately modified copies)",
    )


def build_parser() -> argparse.ArgumentParser:
    from .core.config import FlagParser  # --output-dir and --output_dir alike, on every command

    parser = FlagParser(prog="hf-fmnist", description="Fashion-MNIST as a first-class Hugging Face package.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = sub.add_parser(
        "build",
        help="build the dataset and export a Hub-ready Parquet folder",
        description="Verify the raw files, build the dataset and write OUTPUT_DIR as push_to_hub lays out a repo: "
        "data/{train,test}-*.parquet and a README.md dataset card.",
    )
    _add_source_flags(build)
    build.add_argument("--output-dir", required=True, help="folder to write (replaced if it is an earlier export)")
    build.add_argument(
        "--audit", help="an `hf-fmnist audit` report folder of this data: its counts become the card's Known issues"
    )
    build.set_defaults(run=_build)

    summary = sub.add_parser(
        "summary",
        help="print rows per split and class counts, save a grid of sample images",
        description="Print rows per split and class counts of a dataset and save a PNG grid of sample images.",
    )
    _add_source_flags(summary)
    summary.add_argument(
        "--dataset", help="an exported folder or a Hub dataset id; default: the built-in Fashion-MNIST"
    )
    summary.add_argument("--grid", help="where to save the sample grid PNG (default: no grid)")
    summary.add_argument(
        "--map", help="where to save a 2-D map PNG of the raw pixels, coloured by class (default: no map)"
    )
    summary.add_argument(
        "--map-method", choices=["umap", "tsne", "pca"], default="umap", help="umap and tsne need the 'embed' extra"
    )
    summary.add_argument("--split", help="the split of the map (default: the first, train)")
    summary.set_defaults(run=_summary)

    evaluate = sub.add_parser(
        "evaluate",
        help="metrics and plots of a model on a Fashion-MNIST split",
        description="Evaluate a model folder or Hub model id: accuracy, top-5, macro-F1, per-class accuracy, "
        "confusion matrix; saves eval_results.json and plots.",
    )
    evaluate.add_argument("--model", required=True, help="a training output folder or a Hub model id")
    evaluate.add_argument("--dataset", help="an exported folder or a Hub dataset id; default: built-in Fashion-MNIST")
    evaluate.add_argument("--split", help="default: test (or validation)")
    evaluate.add_argument("--output-dir", help="default: MODEL/evaluation, or ./evaluation-NAME for a Hub id")
    evaluate.add_argument("--batch-size", type=_positive_int, default=1000, help="images per forward pass")
    evaluate.add_argument("--max-eval-samples", type=_positive_int, help="only the first N images")
    evaluate.add_argument("--data-dir", help="raw files for the built-in dataset")
    evaluate.set_defaults(run=_evaluate)

    predict = sub.add_parser(
        "predict",
        help="classify image files and folders",
        description="Classify image files (and the images in folders). A bad file gets its own error; the rest "
        "still run. Exit status 1 if any file failed.",
    )
    predict.add_argument("--model", required=True, help="a training output folder or a Hub model id")
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    predict.add_argument("--top-k", type=int, default=3, help="labels to show per image")
    predict.add_argument("--json", action="store_true", help="print JSON (one object per file)")
    predict.set_defaults(run=_predict)

    push_ds = sub.add_parser(
        "push-dataset",
        help="publish a dataset export to the Hub",
        description="Push a folder written by `hf-fmnist build` (built now if --dataset-dir is not given) to a "
        "Hub dataset repo, as one commit, with the card rendered for that repo; unchanged content makes no commit.",
    )
    push_ds.add_argument("--dataset-dir", help="a folder written by `hf-fmnist build`")
    push_ds.add_argument("--data-dir", help="raw files, when building the export now")
    push_ds.add_argument(
        "--audit",
        help="when building the export now: an `hf-fmnist audit` report folder of this data, for the card's Known "
        "issues (an export from `build --audit` already has them)",
    )
    _add_push_flags(push_ds, "hf_fmnist")
    push_ds.set_defaults(run=_push_dataset)

    push_m = sub.add_parser(
        "push-model",
        help="publish a trained model folder to the Hub",
        description="Push a training output folder (model, processor, card, plots, results, config, TensorBoard "
        "logs, widget examples; not checkpoints) to a Hub model repo, as one commit, with the card rendered for "
        "that repo; unchanged content makes no commit.",
    )
    push_m.add_argument("--model-dir", required=True, help="a folder written by train.py")
    _add_push_flags(push_m, "<the model folder's name>")
    push_m.set_defaults(run=_push_model)

    demo = sub.add_parser(
        "demo",
        help="a Gradio demo of a model in the browser (needs the 'demo' extra)",
        description="Serve a Gradio app: upload or draw an image, see the top-5 classes and the 28x28 image the "
        "model sees; clickable Fashion-MNIST test images; optional photo preprocessing. Works offline with a local "
        "model folder.",
    )
    demo.add_argument("--model", required=True, help="a training output folder or a Hub model id")
    demo.add_argument("--port", type=int, help="default: 7860, or the next free port")
    demo.add_argument("--host", action="store_true", help="listen on all interfaces (default: this machine only)")
    demo.add_argument("--share", action="store_true", help="also open a public gradio.live link (goes online)")
    demo.add_argument("--data-dir", help="raw files for the example test images")
    demo.set_defaults(run=_demo)

    push_s = sub.add_parser(
        "push-space",
        help="publish the demo as a Space linked to a Hub model: the Gradio app (needs the 'demo' extra), or with "
        "--static a page in which transformers.js classifies in the browser",
        description="Push the demo app (app.py, requirements.txt, README with Space metadata, the demo code, "
        "example images) to a Hub Space, as one commit (none when unchanged), then link the Space from the model "
        "card.",
    )
    push_s.add_argument("--model", required=True, help="NAMESPACE/NAME of the model repo the Space runs")
    push_s.add_argument("--data-dir", help="raw files for the example test images")
    push_s.add_argument(
        "--static",
        action="store_true",
        help="publish a static Space instead: a page in which transformers.js (copied from js/node_modules, "
        "`npm ci --ignore-scripts`) classifies in the browser, loading the model's onnx/model_quantized.onnx",
    )
    _add_push_flags(push_s, DEFAULT_SPACE_NAME)
    push_s.set_defaults(run=_push_space)

    export = sub.add_parser(
        "export",
        help="export a model folder to ONNX (fp32, int8, fp16), verified with onnxruntime (needs the 'onnx' extra)",
        description="Write onnx/model.onnx (fp32), onnx/model_quantized.onnx (int8, static QDQ) and "
        "onnx/model_fp16.onnx (float32 pixel_values in, with a dynamic batch size; float32 logits out) and "
        "onnx/export.json, in the layout transformers.js and Optimum read. Nothing is kept unless, on the test "
        "images, model.onnx has PyTorch's top-1 class on at least 9,990 of 10,000 and the int8 and fp16 files get "
        "at most 30 and 5 of 10,000 fewer right than PyTorch.",
    )
    export.add_argument("--model", required=True, help="a folder written by train.py")
    export.add_argument("--format", choices=["onnx"], default="onnx", help="only onnx")
    export.add_argument("--output", help="folder for onnx/ and the config files (default: the model folder)")
    export.add_argument("--data-dir", help="raw files for the test split used to verify")
    export.add_argument(
        "--dtypes",
        default="fp32,int8,fp16",
        type=_export_dtypes,
        help="files to write, comma-separated: fp32 (onnx/model.onnx, always), int8 (onnx/model_quantized.onnx, "
        "static QDQ), fp16 (onnx/model_fp16.onnx); each is verified on the test images (default: all three)",
    )
    export.add_argument(
        "--max-test-images",
        type=_positive_int,
        help="verify on the first N test images only (default: all 10,000; the thresholds scale with N)",
    )
    export.add_argument(
        "--for-browser",
        action="store_true",
        help="refuse, before any work, a model whose type transformers.js cannot run (today's cnn and pvt presets)",
    )
    export.set_defaults(run=_export)

    embed = sub.add_parser(
        "embed",
        help="2-D map and TensorBoard projector of a model's features (UMAP/t-SNE: the 'embed' extra)",
        description="Run a model folder or Hub id over a split, take its pooled penultimate features (the "
        "backbone's pooler_output, or its last hidden state averaged), and write map.png (UMAP, t-SNE or PCA, "
        "coloured by class), map.csv and a TensorBoard projector folder (sprite and class metadata).",
    )
    embed.add_argument("--model", required=True, help="a training output folder or a Hub model id")
    embed.add_argument("--output-dir", required=True, help="folder to write (new, empty, or an earlier embed's)")
    embed.add_argument("--dataset", help="an exported folder or a Hub dataset id; default: built-in Fashion-MNIST")
    embed.add_argument("--split", help="default: test (or validation)")
    embed.add_argument("--method", choices=["umap", "tsne", "pca"], default="umap", help="default: umap")
    embed.add_argument(
        "--thumbnails", type=_count, default=0, help="draw this many sampled images on the map (0 to 1,000,000)"
    )
    embed.add_argument("--max-samples", type=_positive_int, help="only the first N images")
    embed.add_argument("--seed", type=int, default=0, help="seed of the map and of the thumbnails' sample")
    embed.add_argument("--data-dir", help="raw files for the built-in dataset")
    embed.set_defaults(run=_embed)

    audit = sub.add_parser(
        "audit",
        help="exact and near duplicates and likely label errors of a dataset (label search: the 'audit' extra)",
        description="Check a dataset for byte-identical images (within and across splits, with their labels), near "
        "duplicates across splits (RMS gray-level difference to the nearest image of the first split, at most "
        "--threshold), and likely label errors (cleanlab on out-of-fold probabilities of a k-fold search that "
        "trains --recipe with the training script's own loop; resumable: run the same command again). Writes a "
        "report folder: report.md, audit.json (for `build --audit`) and image grids.",
    )
    audit.add_argument("--dataset", help="an exported folder or a Hub dataset id; default: built-in Fashion-MNIST")
    audit.add_argument("--data-dir", help="raw files for the built-in dataset")
    audit.add_argument("--output-dir", required=True, help="the report folder (new, empty, or an earlier audit's)")
    audit.add_argument(
        "--threshold",
        type=_gray_levels,
        default=10.0,  # data.duplicates.NEAR_THRESHOLD (not imported here: --help stays light)
        help="near-duplicate threshold, RMS gray levels (0-255); default 10 (docs/dataset.md says why)",
    )
    audit.add_argument("--skip-labels", action="store_true", help="duplicates only: no k-fold label search")
    audit.add_argument("--label-split", default="train", help="the split searched for label errors (default: train)")
    audit.add_argument("--folds", type=int, default=5, help="k of the k-fold search (default 5)")
    audit.add_argument("--recipe", default="cpu-5min", help="the training recipe of every fold (default cpu-5min)")
    audit.add_argument("--model", help="a preset or checkpoint instead of the recipe's model")
    audit.add_argument("--num-train-epochs", type=int, help="epochs per fold; default: the recipe's")
    audit.add_argument("--per-device-train-batch-size", type=int, help="default: the recipe's")
    audit.add_argument(
        "--filter-by",
        choices=["prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given"],
        default="prune_by_noise_rate",
        help="cleanlab's find_label_issues rule (default: its own, prune_by_noise_rate); changing it reuses the folds",
    )
    audit.add_argument("--seed", type=int, default=42, help="seed of the folds and of fold i's training (seed + i)")
    audit.set_defaults(run=_audit)

    sub.add_parser(
        "train",
        help="train or fine-tune a model (the same flags as train.py; see `hf-fmnist train --help`)",
        add_help=False,
    )
    sub.add_parser(
        "tune",
        help="search training settings with Optuna on a held-out share of the training split (see "
        "`hf-fmnist tune --help`)",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:  # the training config owns its flags: same parser as train.py
        from .training.loop import main as train_main

        return train_main(argv[1:])
    if argv[:1] == ["tune"]:  # its own flags, and its own signal handling (a cut-off trial is recorded as failed)
        from .training.tune import main as tune_main

        return tune_main(argv[1:])
    args = build_parser().parse_args(argv)
    previous = _on_sigterm(_terminate)
    try:
        status = args.run(args)
    except HfFmnistError as e:
        print(error_line(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated (SIGTERM); nothing half-written was left", file=sys.stderr)
        return 143
    except BrokenPipeError:  # e.g. `hf-fmnist ... | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        _on_sigterm(previous)
    return status or 0


class Terminated(BaseException):
    """SIGTERM (``timeout``, ``kill``, a scheduler) arrived: raised where the command is, so that its ``finally``
    blocks remove their temp folders (the default action ended the process at once, leaving an export's
    ``.export-*`` folder behind)."""


def _terminate(signum, frame):
    raise Terminated


def _on_sigterm(handler):
    """Install ``handler`` for SIGTERM in the main thread; returns the previous one (None elsewhere)."""
    import signal
    import threading

    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


def _version() -> str:
    from . import __version__

    return __version__


if __name__ == "__main__":
    sys.exit(main())
