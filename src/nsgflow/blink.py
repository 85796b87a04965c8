"""Blink views: the frames one after another with one shared stretch, as a GIF and an HTML page.

With one stretch for every frame, the inputs flicker (different sky levels,
gradients and transparency) and the normalized frames should not: that is how
NSG users check a normalization. The stretch is PixInsight's automatic screen
transfer function (auto-STF) of the reference, so the sky is a visible grey.
The page also shows each normalized frame minus the reference, with 0 at mid
grey: a gradient the normalization left behind is a slope of grey there.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from nsgflow.io import atomic_path, write_text
from nsgflow.robust import mad_sigma

__all__ = [
    "Stretch",
    "auto_stretch",
    "blink_gif",
    "blink_html",
    "difference_image",
    "mtf",
    "stretch",
    "thumbnail",
]

#: Auto-STF: the median (the sky) is shown at this fraction of white ...
TARGET_BACKGROUND = 0.25
#: ... after clipping the shadows this many normalized MADs from the median (PixInsight's default).
SHADOWS_CLIP = -2.8
#: In a difference image black and white are this many of the reference's noise sigmas below and
#: above 0: its own noise (about 1.4 sigmas, both frames') stays grey, a gradient left behind of a
#: sigma is a shade a fifth of the way to black or white.
DIFFERENCE_SIGMAS = 5.0


def thumbnail(frame: np.ndarray, max_px: int = 360) -> np.ndarray:
    """Block-averaged copy of ``frame`` whose larger side is at most about ``max_px``; no-data stays 0."""
    step = max(1, int(np.ceil(max(frame.shape) / max_px)))
    ny, nx = (s // step * step for s in frame.shape)
    # blocks of whole rows first (a view: no copy of the frame), then along x on what is left
    rows = frame[:ny].reshape(ny // step, step, frame.shape[1])
    total = rows.sum(axis=1, dtype=np.float64)[:, :nx].reshape(ny // step, nx // step, step).sum(axis=2)
    valid = np.count_nonzero(rows, axis=1)[:, :nx].reshape(ny // step, nx // step, step).sum(axis=2)
    return np.divide(total, valid, out=np.zeros_like(total), where=valid > 0)


def mtf(midtones: float, x: np.ndarray | float) -> np.ndarray | float:
    """PixInsight's midtones transfer function of ``x`` in [0, 1]: 0, ``midtones`` and 1 become 0, 1/2 and 1.

    Examples
    --------
    >>> float(mtf(0.25, 0.25)), float(mtf(0.25, 0.0)), float(mtf(0.25, 1.0))
    (0.5, 0.0, 1.0)
    """
    return (midtones - 1) * x / ((2 * midtones - 1) * x - midtones)


@dataclass(frozen=True)
class Stretch:
    """A screen transfer function (STF), as PixInsight's: how data values are shown.

    Attributes
    ----------
    shadows, highlights : float
        The data values shown black and white; those beyond are clipped.
    midtones : float
        Balance of the midtones transfer function (:func:`mtf`) between them.
    """

    shadows: float
    highlights: float
    midtones: float


def auto_stretch(reference: np.ndarray) -> Stretch:
    """PixInsight's auto-STF of ``reference``'s data (non-zero) pixels.

    Shadows clip at median + :data:`SHADOWS_CLIP` normalized MADs; white is
    the brightest pixel; the midtones balance puts the median at
    :data:`TARGET_BACKGROUND` of white.
    """
    valid = reference[reference != 0].astype(np.float64)
    median = float(np.median(valid))
    sigma = mad_sigma(valid, median)
    shadows = median + SHADOWS_CLIP * sigma
    highlights = float(valid.max())
    # the balance that takes the median to TARGET_BACKGROUND: mtf(mtf(b, x), x) = b
    midtones = mtf(TARGET_BACKGROUND, (median - shadows) / (highlights - shadows))
    return Stretch(shadows, highlights, float(midtones))


def stretch(image: np.ndarray, transfer: Stretch) -> np.ndarray:
    """8-bit image of ``image`` through ``transfer`` (no-data black), top row first."""
    scaled = np.clip((image - transfer.shadows) / (transfer.highlights - transfer.shadows), 0, 1)
    out = np.round(255 * mtf(transfer.midtones, scaled)).astype(np.uint8)
    out[image == 0] = 0
    return np.flipud(out)  # FITS row 0 is the bottom


def difference_image(image: np.ndarray, reference: np.ndarray, sigma: float) -> np.ndarray:
    """8-bit image of ``image`` minus ``reference``, 0 at mid grey, top row first.

    :data:`DIFFERENCE_SIGMAS` times ``sigma`` below and above 0 are black and
    white. Pixels without data in either frame are black.
    """
    ratio = np.clip((image - reference) / (DIFFERENCE_SIGMAS * max(sigma, 1e-12)), -1, 1)
    out = np.round(127.5 + 127.5 * ratio).astype(np.uint8)
    out[(image == 0) | (reference == 0)] = 0
    return np.flipud(out)  # FITS row 0 is the bottom


def _labelled(pixels: np.ndarray, label: str) -> Image.Image:
    image = Image.fromarray(pixels)
    ImageDraw.Draw(image).text((4, 4), label, fill=255)
    return image


def blink_gif(
    images: list[np.ndarray], labels: list[str], path: str | os.PathLike, ms_per_frame: int = 700
) -> None:
    """Write the 8-bit images as an endless animated GIF, each labelled."""
    frames = [_labelled(p, label) for p, label in zip(images, labels, strict=True)]
    with atomic_path(path) as tmp:
        frames[0].save(
            tmp, format="GIF", save_all=True, append_images=frames[1:], duration=ms_per_frame, loop=0
        )


def _png(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def blink_html(
    sets: dict[str, list[np.ndarray]],
    labels: list[str],
    path: str | os.PathLike,
    title: str = "nsgflow blink",
    note: str = "",
) -> None:
    """Write a standalone page that flips through the frames of every set side by side.

    ``sets`` maps a caption (e.g. "inputs", "normalized") to 8-bit images in
    the order of ``labels``. Arrow keys or the buttons step; "play" loops.
    ``note`` (text) says above them what the images show.
    """
    columns = "".join(
        f'<figure><figcaption>{html.escape(name)}</figcaption><img id="set{i}"></figure>'
        for i, name in enumerate(sets)
    )
    data = [[f"data:image/png;base64,{_png(p)}" for p in images] for images in sets.values()]
    # labels are shown as text (textContent); "</" is escaped so that no name can end the script
    names = json.dumps(labels).replace("</", "<\\/")
    script = f"""
const sets = {json.dumps(data)};
const labels = {names};
let i = 0, timer = null;
function show(k) {{
  i = (k + labels.length) % labels.length;
  sets.forEach((s, j) => document.getElementById('set' + j).src = s[i]);
  document.getElementById('label').textContent = (i + 1) + ' / ' + labels.length + ': ' + labels[i];
}}
function play() {{
  if (timer) {{ clearInterval(timer); timer = null; }} else {{ timer = setInterval(() => show(i + 1), 700); }}
}}
document.addEventListener('keydown', e => {{
  if (e.key === 'ArrowRight') show(i + 1);
  if (e.key === 'ArrowLeft') show(i - 1);
  if (e.key === ' ') {{ e.preventDefault(); play(); }}
}});
show(0);
"""
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;background:#111;color:#ddd}} figure{{display:inline-block;margin:8px}}
img{{image-rendering:pixelated;border:1px solid #444}} button{{font-size:1em}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{html.escape(note)} Arrow keys step, space plays.</p>
<p><button onclick="show(i - 1)">&larr;</button> <button onclick="play()">play / stop</button>
<button onclick="show(i + 1)">&rarr;</button> <span id="label"></span></p>
{columns}
<script>{script}</script></body></html>
"""
    write_text(path, page)
