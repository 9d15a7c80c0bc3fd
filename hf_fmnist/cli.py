"""The ``hf-fmnist`` command. Subcommands import their heavy dependencies only when they run."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .errors import HfFmnistError


def _build(args: argparse.Namespace) -> None:
    import time

    from .builder import export

    start = time.perf_counter()
    folder = export(args.output_dir, data_dir=args.data_dir, verify=not args.no_verify)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    print(f"Wrote {folder} ({len(files)} files, {size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")
    for p in files:
        print(f"  {p.relative_to(folder)}  {p.stat().st_size:,} bytes")
    print(f'Load it with: datasets.load_dataset("{folder}")')


def _summary(args: argparse.Namespace) -> None:
    from .data import open_dataset
    from .summary import print_summary

    dataset = open_dataset(args.dataset, data_dir=args.data_dir, verify=not args.no_verify)
    print_summary(dataset, grid=args.grid)


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
    parser = argparse.ArgumentParser(
        prog="hf-fmnist", description="Fashion-MNIST as a first-class Hugging Face package."
    )
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except HfFmnistError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `hf-fmnist ... | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


def _version() -> str:
    from . import __version__

    return __version__


if __name__ == "__main__":
    sys.exit(main())
