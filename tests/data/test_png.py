"""The shards' PNG decoder: libpng's pixels on valid files, a ValueError (never a crash) on anything else."""

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import ImageReadMode
from torchvision.io import decode_png as libpng_decode

from ddpm.data.png import decode_png

ROWS = b"".join(b"\x00" + bytes(range(8 * i, 8 * i + 8)) for i in range(8))  # 8×8 grey, filter type 0


def chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png(idat: bytes, depth=8, colour=0, interlace=0, width=8, height=8) -> bytes:
    """A PNG whose every CRC is right, whatever its pixel data: what a broken or hostile encoder could write."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("shape", [(8, 8, 1), (32, 32, 3), (5, 7, 4)])
def test_valid_pngs_decode_exactly_as_libpng_does(shape):
    pixels = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if shape[2] == 1 else pixels).save(buf, format="PNG", compress_level=6)
    ours = decode_png(buf.getvalue(), shape)
    assert ours.dtype == torch.uint8 and ours.shape == (shape[2], shape[0], shape[1])
    assert torch.equal(
        ours, libpng_decode(torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8), ImageReadMode.UNCHANGED)
    )


def test_handmade_png_decodes():
    assert decode_png(png(zlib.compress(ROWS)), (8, 8, 1))[0, 1].tolist() == list(range(8, 16))


@pytest.mark.parametrize(
    "idat,message",
    [
        (zlib.compress(b"\x07" + ROWS[1:]), "pixel data does not decode"),  # filter type 7 does not exist
        (zlib.compress(ROWS[:-5]), r"pixel data does not decode \(not enough image data\)"),
        (zlib.compress(ROWS)[:-10], r"pixel data does not decode \(not enough image data\)"),
        (bytes(b ^ 0xFF if i == 10 else b for i, b in enumerate(zlib.compress(ROWS))), "pixel data does not decode"),
    ],
)
def test_bad_pixel_data_behind_valid_crcs_is_a_value_error(idat, message):
    """What libpng dies on (a segfault in torchvision's decoder) when no CRC gives it away."""
    with pytest.raises(ValueError, match=message):
        decode_png(png(idat), (8, 8, 1))


@pytest.mark.parametrize(
    "kwargs,shape,message",
    [
        ({}, (8, 8, 3), "PNG is 8×8×1, the manifest says 8×8×3"),
        ({"width": 9}, (8, 8, 1), "PNG is 8×9×1, the manifest says 8×8×1"),
        (
            {"depth": 16},
            (8, 8, 1),
            r"not 8-bit non-interlaced grey/RGB\(A\) \(bit depth 16, colour type 0, interlace 0\)",
        ),
        ({"colour": 3}, (8, 8, 1), r"\(bit depth 8, colour type 3, interlace 0\)"),
        ({"interlace": 1}, (8, 8, 1), r"\(bit depth 8, colour type 0, interlace 1\)"),
    ],
)
def test_a_png_unlike_what_prepare_writes_is_refused_before_decoding(kwargs, shape, message):
    with pytest.raises(ValueError, match=message):
        decode_png(png(zlib.compress(ROWS), **kwargs), shape)


def test_structural_defects_are_named():
    good = png(zlib.compress(ROWS))
    cases = {
        b"GIF89a" + good[6:]: "not a PNG",
        good + b"x": "1 bytes after IEND",
        good[:8] + chunk(b"IDAT", zlib.compress(ROWS)) + chunk(b"IEND", b""): "does not start with a 13-byte IHDR",
        good[:33] + chunk(b"IEND", b""): "no IDAT chunk",
    }
    for data, message in cases.items():
        with pytest.raises(ValueError, match=message):
            decode_png(data, (8, 8, 1))
