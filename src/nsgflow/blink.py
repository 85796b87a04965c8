"""Blink views: the frames one after another with one shared stretch, as a GIF and an HTML page.

With one stretch for every frame, the inputs flicker (different sky levels,
gradients and transparency) and the normalized frames should not: that is how
NSG users check a normalization.
"""

from __future__ import annotations

import base64
import html
import io
import os

import numpy as np
from PIL import Image, ImageDraw

from nsgflow.io import atomic_path

__all__ = ["blink_gif", "blink_html", "stretch", "thumbnail"]


def thumbnail(frame: np.ndarray, max_px: int = 360) -> np.ndarray:
    """Block-averaged copy of ``frame`` whose larger side is at most about ``max_px``; no-data stays 0."""
    step = max(1, int(np.ceil(max(frame.shape) / max_px)))
    ny, nx = (s // step * step for s in frame.shape)
    # blocks of whole rows first (a view: no copy of the frame), then along x on what is left
    rows = frame[:ny].reshape(ny // step, step, frame.shape[1])
    total = rows.sum(axis=1, dtype=np.float64)[:, :nx].reshape(ny // step, nx // step, step).sum(axis=2)
    valid = np.count_nonzero(rows, axis=1)[:, :nx].reshape(ny // step, nx // step, step).sum(axis=2)
    return np.divide(total, valid, out=np.zeros_like(total), where=valid > 0)


def stretch(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """8-bit asinh stretch of ``image`` between ``low`` and ``high`` (no-data black)."""
    scaled = np.clip((image - low) / max(high - low, 1e-12), 0, 1)
    out = (255 * np.arcsinh(10 * scaled) / np.arcsinh(10)).astype(np.uint8)
    out[image == 0] = 0
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
) -> None:
    """Write a standalone page that flips through the frames of every set side by side.

    ``sets`` maps a caption (e.g. "inputs", "normalized") to 8-bit images in
    the order of ``labels``. Arrow keys or the buttons step; "play" loops.
    """
    columns = "".join(
        f'<figure><figcaption>{html.escape(name)}</figcaption><img id="set{i}"></figure>'
        for i, name in enumerate(sets)
    )
    data = [[f"data:image/png;base64,{_png(p)}" for p in images] for images in sets.values()]
    script = f"""
const sets = {data!r};
const labels = {[html.escape(label) for label in labels]!r};
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
<p>One shared stretch for every frame: the inputs differ, the normalized frames should look alike.
Arrow keys step, space plays.</p>
<p><button onclick="show(i - 1)">&larr;</button> <button onclick="play()">play / stop</button>
<button onclick="show(i + 1)">&rarr;</button> <span id="label"></span></p>
{columns}
<script>{script}</script></body></html>
"""
    with atomic_path(path) as tmp:
        tmp.write_text(page)
