import io

import numpy as np
import pytest
from PIL import Image

from hf_fmnist.data import png


def _pil_png(array: np.ndarray, mode: str | None = None, **save) -> bytes:
    buf = io.BytesIO()
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    image.save(buf, format="PNG", **save)
    return buf.getvalue()


@pytest.fixture
def images():
    rng = np.random.default_rng(1)
    out = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8)
    out[:, :10] = 0
    out[:, 20:] = np.arange(28, dtype=np.uint8) * 3  # smooth ramps: PIL picks Sub/Up/Paeth filters here
    return out


def test_encoded_pngs_decode_identically_with_pil(images):
    pngs = png.encode_gray(images, threads=2)
    assert len(pngs) == len(images)
    for blob, expected in zip(pngs, images):
        with Image.open(io.BytesIO(blob)) as im:
            assert im.mode == "L" and im.size == (28, 28)
            np.testing.assert_array_equal(np.asarray(im), expected)


def test_encoding_is_deterministic_and_thread_count_independent(images):
    assert png.encode_gray(images, threads=1) == png.encode_gray(images, threads=3)


def test_decode_own_and_pil_pngs(images):
    np.testing.assert_array_equal(png.decode_gray(png.encode_gray(images)), images)
    pil_made = [_pil_png(a) for a in images]  # adaptive filters, including Paeth: the PIL fallback
    np.testing.assert_array_equal(png.decode_gray(pil_made), images)


def test_decode_colour_and_jpeg_to_gray(images):
    rgb = _pil_png(images[0], "RGB")
    np.testing.assert_array_equal(png.decode_gray([rgb])[0], images[0])
    buf = io.BytesIO()
    Image.fromarray(images[1]).save(buf, format="JPEG", quality=100)
    assert png.decode_gray([buf.getvalue()]).shape == (1, 28, 28)


def test_decode_errors_name_the_image(images):
    blobs = png.encode_gray(images[:3])
    with pytest.raises(ValueError, match="image 1 cannot be decoded"):
        png.decode_gray([blobs[0], b"not an image", blobs[2]])
    other = _pil_png(np.zeros((30, 30), np.uint8))
    with pytest.raises(ValueError, match="image 2 is 30x30, expected 28x28"):
        png.decode_gray([blobs[0], blobs[1], other])


def test_encode_rejects_wrong_dtype():
    with pytest.raises(ValueError, match="uint8"):
        png.encode_gray(np.zeros((2, 28, 28), np.float32))
