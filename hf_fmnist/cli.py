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
    folder = export(args.output_dir, data_dir=args.data_dir, verify=not args.no_verify)
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

    dataset = open_dataset(args.dataset, data_dir=args.data_dir, verify=not args.no_verify)
    print_summary(dataset, grid=args.grid, root=local_root(args.dataset))


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

    if args.dataset_dir:
        url = push_dataset(args.repo_id, args.dataset_dir, **_push_kwargs(args))
    else:
        from .data.export import export

        with tempfile.TemporaryDirectory() as tmp:
            folder = export(f"{tmp}/dataset", data_dir=args.data_dir)
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
        args.repo_id, args.model, data_dir=args.data_dir, default_name=DEFAULT_SPACE_NAME, **_push_kwargs(args)
    )
    print(f"{'Pull request' if args.create_pr else 'Space'} at {result.get('pr_url') or result['url']}")


def _export(args: argparse.Namespace) -> None:
    from .inference.onnx import export_onnx, format_report

    print(format_report(export_onnx(args.model, args.output, data_dir=args.data_dir)))


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
    evaluate.add_argument("--batch-size", type=int, default=1000, help="images per forward pass")
    evaluate.add_argument("--max-eval-samples", type=int, help="only the first N images")
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
        help="publish the demo as a Gradio Space linked to a Hub model (needs the 'demo' extra)",
        description="Push the demo app (app.py, requirements.txt, README with Space metadata, the demo code, "
        "example images) to a Hub Space, as one commit (none when unchanged), then link the Space from the model "
        "card.",
    )
    push_s.add_argument("--model", required=True, help="NAMESPACE/NAME of the model repo the Space runs")
    push_s.add_argument("--data-dir", help="raw files for the example test images")
    _add_push_flags(push_s, DEFAULT_SPACE_NAME)
    push_s.set_defaults(run=_push_space)

    export = sub.add_parser(
        "export",
        help="export a model folder to ONNX, verified with onnxruntime (needs the 'onnx' extra)",
        description="Write onnx/model.onnx (input pixel_values with a dynamic batch size, output logits) in the "
        "layout transformers.js and Optimum read. It is kept only if onnxruntime agrees with PyTorch on the top-1 "
        "class of at least 99.9% of the 10,000 test images.",
    )
    export.add_argument("--model", required=True, help="a folder written by train.py")
    export.add_argument("--format", choices=["onnx"], default="onnx", help="only onnx")
    export.add_argument("--output", help="folder for onnx/model.onnx and the config files (default: the model folder)")
    export.add_argument("--data-dir", help="raw files for the test split used to verify")
    export.set_defaults(run=_export)

    sub.add_parser(
        "train",
        help="train or fine-tune a model (the same flags as train.py; see `hf-fmnist train --help`)",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:  # the training config owns its flags: same parser as train.py
        from .training.loop import main as train_main

        return train_main(argv[1:])
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
