"""Label-image TIFF input/output for the CTC format (tifffile, with a small LZW fallback).

The official CTC data is LZW-compressed. tifffile decodes LZW only through the optional
``imagecodecs`` package, so when that is missing the strips are decoded here instead (pure
Python: fine for test-sized files, slow for large sequences; install ``imagecodecs`` for speed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ParseError, WriteError

try:  # tifffile is the `ctc` extra; the module imports without it so the registry lists ctc
    import tifffile
except ModuleNotFoundError:  # pragma: no cover - exercised only without the extra
    tifffile = None

try:
    import imagecodecs  # noqa: F401

    HAVE_IMAGECODECS = True
except ModuleNotFoundError:  # pragma: no cover - depends on the environment
    HAVE_IMAGECODECS = False

_LZW = 5


def require_tifffile(path: Path | None = None) -> None:
    """Raise a clear error when the ``ctc`` extra is not installed."""
    if tifffile is None:
        raise ParseError("reading or writing CTC label images needs tifffile", path=path,
                         hint="pip install 'trackstore[ctc]'")


def read_label_image(path: Path) -> tuple[np.ndarray, str]:
    """One label image as an array ((Y, X) or (Z, Y, X)) and its compression name."""
    require_tifffile(path)
    try:
        with tifffile.TiffFile(path) as tf:
            compression = tf.pages[0].compression.name if len(tf.pages) else "NONE"
            try:
                return tf.asarray(), compression
            except ValueError as e:
                if "imagecodecs" not in str(e) or tf.pages[0].compression != _LZW:
                    raise
                return _read_lzw_pages(tf, path), compression
    except ParseError:
        raise
    except Exception as e:  # tifffile raises many kinds for a broken file
        raise ParseError(f"cannot read this label image: {e}", path=path) from e


def write_label_image(path: Path, image: np.ndarray, compression: str | None) -> None:
    """Write one label image (3D arrays become one page per slice)."""
    require_tifffile(path)
    try:
        tifffile.imwrite(path, image, compression=compression, photometric="minisblack")
    except Exception as e:
        raise WriteError(f"cannot write this label image: {e}", path=path) from e


def writable_compression(name: str | None) -> str | None:
    """The tifffile compression argument that reproduces a source compression, if it can."""
    if name is None:
        return "zlib"
    key = name.upper()
    if key == "NONE":
        return None
    if key == "LZW":
        return "lzw" if HAVE_IMAGECODECS else "zlib"  # tifffile encodes LZW only via imagecodecs
    if key in ("ADOBE_DEFLATE", "DEFLATE", "ZLIB"):
        return "zlib"
    return "zlib"


def _read_lzw_pages(tf, path: Path) -> np.ndarray:
    """Decode every page of an LZW, strip-organised, single-sample TIFF."""
    planes = []
    for page in tf.pages:
        if page.is_tiled or page.samplesperpixel != 1 or page.predictor not in (1, 2) or page.fillorder != 1:
            raise ParseError("LZW image with tiles, several samples or a float predictor "
                             "cannot be decoded without imagecodecs", path=path, hint="pip install imagecodecs")
        dtype = np.dtype(page.dtype).newbyteorder(tf.byteorder)
        width, height = page.imagewidth, page.imagelength
        rows = []
        for offset, count in zip(page.dataoffsets, page.databytecounts):
            tf.filehandle.seek(offset)
            raw = _lzw_decode(tf.filehandle.read(count))
            strip = np.frombuffer(raw, dtype=dtype)
            n_rows = len(strip) // width
            strip = strip[: n_rows * width].reshape(n_rows, width)
            if page.predictor == 2:  # horizontal differencing: undo with a wrapping cumulative sum
                strip = np.cumsum(strip, axis=1, dtype=dtype)
            rows.append(strip)
        plane = np.concatenate(rows)[:height] if rows else np.zeros((height, width), dtype)
        planes.append(plane.astype(dtype.newbyteorder("="), copy=False))
    return planes[0] if len(planes) == 1 else np.stack(planes)


def _lzw_decode(data: bytes) -> bytes:
    """TIFF-flavoured LZW (MSB-first codes of 9-12 bits, early change, 256 = clear, 257 = end)."""
    buf = data + b"\0\0\0"
    n_bits_total = len(data) * 8
    out = bytearray()
    table: list[bytes] = [bytes((i,)) for i in range(256)] + [b"", b""]
    width = 9
    pos = 0
    prev: bytes | None = None
    while pos + width <= n_bits_total:
        byte = pos >> 3
        word = (buf[byte] << 16) | (buf[byte + 1] << 8) | buf[byte + 2]
        code = (word >> (24 - (pos & 7) - width)) & ((1 << width) - 1)
        pos += width
        if code == 256:
            del table[258:]
            width = 9
            prev = None
            continue
        if code == 257:
            break
        if prev is None:
            entry = table[code]
        elif code < len(table):
            entry = table[code]
            table.append(prev + entry[:1])
        else:
            entry = prev + prev[:1]
            table.append(entry)
        out += entry
        prev = entry
        if len(table) + 1 >= (1 << width) and width < 12:
            width += 1
    return bytes(out)
