"""The hf-fmnist command: help, build, summary; user mistakes are one line on stderr, exit 2, no traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from hf_fmnist import cli


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "build" in out and "summary" in out


def test_build_and_summary(synthetic, tmp_path, capsys):
    out_dir = tmp_path / "export"
    assert cli.main(["build", "--data-dir", str(synthetic.folder), "--no-verify", "--output-dir", str(out_dir)]) == 0
    assert "Wrote" in capsys.readouterr().out
    grid = tmp_path / "grid.png"
    assert cli.main(["summary", "--dataset", str(out_dir), "--grid", str(grid)]) == 0
    out = capsys.readouterr().out
    assert "Rows per split: train 40, test 20" in out
    assert "Ankle boot" in out
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("hf-fmnist")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)


def test_corrupt_raw_folder_is_rejected_cleanly(synthetic, tmp_path):
    synthetic.path("train-labels-idx1-ubyte").write_bytes(synthetic.path("train-labels-idx1-ubyte").read_bytes()[:-9])
    result = _run_cli("build", "--data-dir", str(synthetic.folder), "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "train-labels-idx1-ubyte.gz" in error_lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_build_does_not_import_torch(synthetic, tmp_path):
    code = (
        "import sys; from hf_fmnist import cli; "
        f"rc = cli.main(['build', '--data-dir', {str(synthetic.folder)!r}, '--no-verify', "
        f"'--output-dir', {str(tmp_path / 'o')!r}]); "
        "assert rc == 0; assert 'torch' not in sys.modules, 'build imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)


def test_summary_of_missing_folder(tmp_path, capsys):
    assert cli.main(["summary", "--dataset", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_every_multiword_flag_takes_dashes_and_underscores_on_every_command():
    """As transformers' HfArgumentParser: --output-dir and --output_dir are one flag, on hf-fmnist's commands and on
    train.py; --help keeps the spelling each command declares."""
    import argparse

    from hf_fmnist.core.config import TrainConfig

    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    parsers = {**commands, "train.py": TrainConfig.parser()}
    checked = 0
    for name, sub in parsers.items():
        for flag in sub._option_string_actions:
            if not flag.startswith("--") or not any(c in flag[2:] for c in "-_"):
                continue
            other = "--" + flag[2:].translate(str.maketrans("-_", "_-"))
            assert sub._declared(other) == flag, (name, flag)
            assert sub._declared(f"{other}=1") == f"{flag}=1", (name, flag)
            checked += 1
    assert checked >= 40
    assert (
        parser.parse_args(["evaluate", "--model", "m", "--output_dir", "o", "--max_eval_samples=5"]).output_dir == "o"
    )
    config = TrainConfig.from_args(["--output-dir", "o", "--num-train-epochs", "2", "--no-hflip", "--", "x"][:-2])
    assert (config.output_dir, config.num_train_epochs, config.hflip) == ("o", 2, False)
    assert "--output-dir OUTPUT_DIR" in commands["build"].format_help() and "--output_dir" not in (
        commands["build"].format_help()
    )
    assert "--output_dir OUTPUT_DIR" in TrainConfig.parser().format_help()
