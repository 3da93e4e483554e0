"""Any image file that PIL opens, as the 8-bit grey values the networks were trained on, or a clear refusal.

TGS tiles are 8-bit, but images reach the predictor (and training folders) in every mode PIL knows:
16-bit seismic exports, float TIFFs, palettes, JPEGs, images with an alpha channel. Converting
them with ``img.convert("L")`` would clip a 16-bit image at 255 and turn it white, and the network
would then predict an empty mask without a word. Here every value range is *scaled* to 0..255:

- mode 1: 0 or 255;
- L: as it is;
- LA, La, RGBA, RGBa, PA: as without alpha when every pixel is opaque; refused otherwise;
- RGB, RGBX, P, CMYK, YCbCr, HSV, LAB: PIL's luma (ITU-R 601-2), so a grey image's equal channels
  come out unchanged;
- I;16 in any byte order (I;16L, I;16B, I;16N) and I (32-bit integers): value / 257 (65535 -> 255).
  A file whose values all fit in 0..255 holds 8-bit data (PIL's ``convert("I;16")`` writes it so)
  and is taken as it is; values beyond 0..65535 are refused;
- F (32-bit floats): 0..1 as fractions, else as I; negative or non-finite values are refused.

A file with several frames (an animated PNG or GIF, a multi-page TIFF) is refused too, as is any
other mode. Every refusal is a ``TGSDataError`` that names the file, its mode and what to do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import TGSDataError

_WITH_ALPHA = ("LA", "La", "RGBA", "RGBa", "PA")
_COLOUR = ("RGB", "RGBX", "P", "CMYK", "YCbCr", "HSV", "LAB")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def _refuse(path: Path, mode: str, why: str) -> TGSDataError:
    return TGSDataError(
        f"{path}: image mode {mode} {why}; save it as 8-bit grey (mode L) or 16-bit grey (I;16) and try again",
        kind=f"mode {mode} refused",
    )


def range_top(values: np.ndarray, path: Path, mode: str, fractions: bool) -> float:
    """The top of the value range that ``values`` (integers or floats) were written in: 1, 255 or 65535."""
    if values.size and not np.isfinite(values).all():
        raise _refuse(path, mode, "holds values that are not finite (NaN or infinity)")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if low < 0:
        raise _refuse(path, mode, f"holds negative values (down to {low:g}), so its range is unknown")
    for top in ((1.0,) if fractions else ()) + (255.0, 65535.0):
        if high <= top:
            return top
    raise _refuse(path, mode, f"holds values up to {high:g}, beyond the 16-bit range 0..65535")


def grey_levels(img: Image.Image, path: str | Path = "image") -> np.ndarray:
    """An opened image as (H, W) float32 grey values in 0..255, scaled from its mode's range, unrounded."""
    path, mode = Path(path), img.mode
    if getattr(img, "n_frames", 1) > 1:
        raise _refuse(path, mode, f"holds {img.n_frames} frames (pages), and one image is expected")
    if mode in _WITH_ALPHA:
        alpha = np.asarray(img.getchannel("A"))
        if (alpha < 255).any():
            raise _refuse(path, mode, f"has {int((alpha < 255).sum())} transparent pixels, which have no grey value")
        img = img.convert("RGB" if mode.startswith(("RGB", "P")) else "L")
    if img.mode == "1":
        return np.asarray(img, dtype=np.float32) * 255
    if img.mode == "L":
        return np.asarray(img, dtype=np.float32)
    if img.mode in _COLOUR:
        return np.asarray(img.convert("RGB").convert("L"), dtype=np.float32)
    if img.mode in (*_SIXTEEN_BIT, "I", "F", "I;16S"):
        values = np.asarray(img).astype(np.float64)
        top = range_top(values, path, mode, fractions=img.mode == "F")
        return (values * (255 / top)).astype(np.float32)
    raise _refuse(path, mode, "is not one this reader knows")


def _open(path: Path) -> tuple[Image.Image, np.ndarray]:
    try:
        with Image.open(path) as img:
            img.load()
            return img, grey_levels(img, path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        if isinstance(err, TGSDataError):
            raise
        raise TGSDataError(
            f"{path}: cannot be read as an image ({err}); check the file or export it again", kind="unreadable"
        ) from None


def read_grey(path: str | Path) -> np.ndarray:
    """An image file as an (H, W) uint8 grey array, its range scaled (not clipped) to 0..255."""
    _, levels = _open(Path(path))
    return np.round(levels).astype(np.uint8)


def read_binary_mask(path: str | Path) -> np.ndarray:
    """A mask file as an (H, W) uint8 array of 0 and 1.

    Every pixel must be 0 or the top of the mode's range exactly (1 in mode 1, 255 in 8-bit modes,
    65535 in 16-bit ones, as Kaggle's masks are): anything between is refused, not rounded.
    """
    path = Path(path)
    img, levels = _open(path)
    if np.isin(np.unique(levels), (0.0, 255.0)).all():
        return (levels == 255).astype(np.uint8)
    if img.mode in _COLOUR or img.mode in _WITH_ALPHA:
        raw, full = np.unique(np.round(levels)).astype(int), 255
    else:
        raw = np.unique(np.asarray(img))
        full = {"1": 1, "L": 255}.get(img.mode) or int(
            range_top(raw.astype(np.float64), path, img.mode, img.mode == "F")
        )
    shown = raw[:6].tolist()
    raise TGSDataError(
        f"{path}: a mask must hold only 0 and {full}, found values {shown}{' ...' if len(raw) > 6 else ''} "
        f"(mode {img.mode}); check that it is a mask and not an image",
        kind="values other than 0 and the full value",
    )
