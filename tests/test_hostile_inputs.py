"""Files and folders from strangers: no external program runs, no link is followed out, memory stays bounded, and
each bad input is one clear error. Cheap: no training (an untrained preset saved once stands in for a model)."""

import json
import os
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hf_fmnist.core.models import load_image_processor, load_model
from hf_fmnist.data import png
from hf_fmnist.errors import HfFmnistError
from hf_fmnist.inference.predict import ImageFileError, load_image, predict

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n(hello from the file author) print\nshowpage\n"


def _copy(model_folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model_folder, tmp_path / "model"))


@pytest.fixture
def fake_ghostscript(tmp_path, monkeypatch) -> Path:
    """A stand-in ``gs`` that records being run: PIL's EPS plugin would run it on the file's PostScript."""
    from PIL import EpsImagePlugin

    ran = tmp_path / "GS_RAN"
    gs = tmp_path / "bin" / "gs"
    gs.parent.mkdir()
    gs.write_text(f'#!/bin/sh\necho "$*" >> {ran}\nexit 1\n')
    gs.chmod(0o755)
    monkeypatch.setenv("PATH", f"{gs.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", str(gs))
    return ran


def test_eps_named_png_is_refused_without_running_ghostscript(tmp_path, fake_ghostscript):
    shoe = tmp_path / "shoe.png"
    shoe.write_bytes(EPS)
    with pytest.raises(ImageFileError, match=r"shoe\.png: not an image file .*PNG, JPEG") as error:
        load_image(shoe)
    assert "\n" not in str(error.value)
    assert not fake_ghostscript.exists()


def test_eps_dataset_cell_is_refused_without_running_ghostscript(fake_ghostscript):
    with pytest.raises(ValueError, match="image 0 cannot be decoded"):
        png.decode_gray([EPS])
    assert not fake_ghostscript.exists()


def test_demo_restricts_pil_formats_for_gradio_uploads(monkeypatch):
    from hf_fmnist.image_limits import IMAGE_FORMATS
    from hf_fmnist.inference.demo import restrict_pil_formats

    Image.init()  # so the copies below hold every plugin, and the real registry is whole again afterwards
    monkeypatch.setattr(Image, "ID", list(Image.ID))
    monkeypatch.setattr(Image, "OPEN", dict(Image.OPEN))
    restrict_pil_formats()
    assert "EPS" not in Image.ID and "EPS" not in Image.OPEN
    assert set(Image.ID) <= set(IMAGE_FORMATS)


@pytest.mark.parametrize(
    "edit, expected",
    [
        ({"size": {"height": 60000, "width": 60000}}, "60000"),
        ({"size": {"height": 0, "width": 0}}, "from 1 to 1024"),
        ({"size": {"height": "x", "width": 28}}, "from 1 to 1024"),
        ({"image_mean": "abc"}, "image_mean 'abc'"),
        ({"image_std": [0.0, 0.0, 0.0]}, "positive"),
        ({"do_center_crop": True, "crop_size": {"height": 100, "width": 100}}, "crops 100x100"),
    ],
)
def test_hostile_image_processor_values_are_one_error_naming_the_folder(model_folder, tmp_path, edit, expected):
    folder = _copy(model_folder, tmp_path)
    config = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps({**config, **edit}))
    with pytest.raises(HfFmnistError, match="image processor") as error:
        load_image_processor(str(folder))
    message = str(error.value)
    assert str(folder) in message and expected in message and "\n" not in message


def _png(width: int, height: int, idat: bytes) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return png.SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_png_header_claiming_a_huge_image_is_refused_before_allocating():
    with pytest.raises(ValueError, match="image 0 is 40000x40000 pixels"):
        png.decode_gray([_png(40000, 40000, zlib.compress(b"\0" * 100))])


def test_total_decoded_size_is_bounded(monkeypatch):
    monkeypatch.setattr(png, "MAX_DECODED_BYTES", 10 * 28 * 28)
    good = png.encode_gray(np.zeros((11, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="11 images of 28x28"):
        png.decode_gray(good)


def test_png_inflating_beyond_its_header_is_refused():
    bomb = _png(28, 28, zlib.compress(bytes(16 << 20), 9))  # 16 MB of zeros in a 16 KB file
    good = png.encode_gray(np.zeros((1, 28, 28), np.uint8))[0]
    with pytest.raises(ValueError, match="image 1 inflates to more than the 28x28 pixels"):
        png.decode_gray([good, bomb])


def test_damaged_model_folders_are_one_error(model_folder, tmp_path):
    folder = _copy(model_folder, tmp_path)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    cases = {
        "truncated": data[:1000],
        "lying header": struct.pack("<Q", 2**62) + data[8:],
    }
    for name, content in cases.items():
        weights.write_bytes(content)
        # a lying header length is refused before transformers reads it (image_limits.check_safetensors_header)
        with pytest.raises(HfFmnistError, match=f"(Cannot load model folder|Model folder) {folder}") as error:
            load_model(str(folder))
        assert "\n" not in str(error.value), name
    weights.unlink()
    with pytest.raises(HfFmnistError, match="OSError"):
        load_model(str(folder))


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_weights_are_refused_without_running_code(model_folder, tmp_path):
    folder = _copy(model_folder, tmp_path)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "CODE_RAN"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(HfFmnistError, match="Cannot load model"):
        load_model(str(folder))
    assert not marker.exists()


def test_model_file_linking_out_of_the_folder_is_refused(model_folder, tmp_path):
    folder = _copy(model_folder, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (folder / "model.safetensors").rename(elsewhere / "someone_else.safetensors")
    (folder / "model.safetensors").symlink_to(elsewhere / "someone_else.safetensors")
    Image.new("L", (28, 28), 128).save(tmp_path / "shoe.png")
    for load in (lambda: load_model(str(folder)), lambda: predict(str(folder), [str(tmp_path / "shoe.png")])):
        with pytest.raises(HfFmnistError, match="model.safetensors is a link leading out of the folder"):
            load()


def test_model_folder_with_a_loop_of_links_is_refused(model_folder, tmp_path):
    folder = _copy(model_folder, tmp_path)
    (folder / "loop").symlink_to("loop")
    with pytest.raises(HfFmnistError, match="loop is a link leading out of the folder"):
        load_model(str(folder))


def test_link_inside_the_model_folder_is_fine(model_folder, tmp_path):
    folder = _copy(model_folder, tmp_path)
    (folder / "model.safetensors").rename(folder / "weights.safetensors")
    (folder / "model.safetensors").symlink_to("weights.safetensors")
    model, _ = load_model(str(folder))
    assert model.config.num_labels == 10


def test_a_hub_cache_snapshot_whose_files_link_into_its_blobs_loads(model_folder, tmp_path):
    """snapshot_download's folders are links into the repo's blobs/ by design; links anywhere else are still refused."""
    repo = tmp_path / "hub" / "models--someone--fmnist"
    snapshot, blobs = repo / "snapshots" / "0123abc", repo / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    for i, path in enumerate(sorted(model_folder.iterdir())):
        (blobs / f"blob{i}").write_bytes(path.read_bytes())
        (snapshot / path.name).symlink_to(Path("..", "..", "blobs", f"blob{i}"))
    model, _ = load_model(str(snapshot))
    assert model.config.num_labels == 10
    (tmp_path / "elsewhere.txt").write_text("not the repo's")
    (snapshot / "notes.txt").symlink_to(tmp_path / "elsewhere.txt")
    with pytest.raises(HfFmnistError, match="notes.txt is a link leading out of the folder"):
        load_model(str(snapshot))


def test_a_huge_config_is_refused_before_it_is_read(model_folder, tmp_path):
    """Before: a 3 GB (sparse) config.json was read whole, 6.5 GB of memory, before failing."""
    folder = _copy(model_folder, tmp_path)
    with (folder / "config.json").open("r+b") as f:
        f.truncate(3 << 30)  # sparse: no disk used
    with pytest.raises(HfFmnistError, match="config.json is 3,221,225,472 bytes"):
        load_model(str(folder))


def test_summary_escapes_class_and_split_names():
    from datasets import ClassLabel, Dataset, DatasetDict, Features
    from datasets import Image as ImageFeature

    from hf_fmnist.data.summary import format_summary

    names = ["Dress\x1b]0;owned\x07\x1b[2J\x1b[31mFAKE LINE\nerror: your token leaked", "Coat"]
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=names)})
    blobs = png.encode_gray(np.zeros((2, 28, 28), np.uint8))
    ds = Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in blobs], "label": [0, 1]}, features=features)
    text = format_summary(DatasetDict({"train\x1b[2J": ds}))
    assert "\x1b" not in text and "\x07" not in text
    assert len(text.splitlines()) == 6  # rows, blank, header, 2 classes, total: no forged line
    assert "Dress\\x1b]0;owned" in text


def test_summary_cuts_a_class_name_of_100000_characters():
    """Review of issue 27: a card naming a class with 100,000 characters gave a table of 100,028-character lines."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features
    from datasets import Image as ImageFeature

    from hf_fmnist.data.summary import format_summary

    names = ["x" * 100_000, "Coat"]
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=names)})
    blobs = png.encode_gray(np.zeros((2, 28, 28), np.uint8))
    ds = Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in blobs], "label": [0, 1]}, features=features)
    lines = format_summary(DatasetDict({"train": ds})).splitlines()
    assert len(lines) == 6 and max(map(len, lines)) < 100 and "x" * 39 + "…" in lines[3]
