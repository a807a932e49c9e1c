"""Generated RGB scenes: a textured ellipse (one of a few texture classes) on a smooth, noisy
background, with the ellipse as its mask. The class is in the texture, not the outline (every
object is an ellipse), so a classifier must look inside the object: a second embedded dataset
with ground-truth localization, different enough from ``shapes`` to serve as an unseen dataset.
Deterministic from the seed."""

from __future__ import annotations

import functools

import numpy as np

from cgmagan.data.base import GeneratedScenesDataModule

TEXTURES = ("stripes", "checker", "dots", "rings")


def _texture(kind: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, rng: np.random.Generator) -> np.ndarray:
    """A binary pattern over the whole image (the mask cuts the object out of it); periods of
    3.5-6 pixels, so that 32x32 scenes hold several periods inside the object."""
    period = rng.uniform(3.5, 6.0)
    if kind == "stripes":  # straight bands at any angle
        a = rng.uniform(0, np.pi)
        return np.sin(2 * np.pi * (xx * np.cos(a) + yy * np.sin(a)) / period) > 0
    if kind == "checker":  # axis-aligned squares
        cell = period / 2
        oy, ox = rng.uniform(0, period, 2)
        return ((np.floor((yy + oy) / cell) + np.floor((xx + ox) / cell)) % 2) == 0
    if kind == "dots":  # a grid of round dots
        oy, ox = rng.uniform(0, period, 2)
        dy = (yy + oy) % period - period / 2
        dx = (xx + ox) % period - period / 2
        return dy**2 + dx**2 <= (0.3 * period) ** 2
    if kind == "rings":  # concentric around the object's centre
        return np.sin(2 * np.pi * np.hypot(yy - cy, xx - cx) / period) > 0
    raise ValueError(f"unknown texture {kind!r}")


@functools.lru_cache(maxsize=6)  # the combinations sharing a dataset render it once; callers copy
def render_textures(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` scenes: images [n, 3, size, size] float32 in [0, 1], labels [n], masks [n, size, size]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((n, 3, size, size), np.float32)
    masks = np.empty((n, size, size), bool)
    labels = rng.integers(0, len(TEXTURES), n)
    for i in range(n):
        # background: a dim colour gradient with low-frequency blotches and pixel noise, no texture
        c0, c1 = rng.uniform(0.05, 0.5, 3), rng.uniform(0.05, 0.5, 3)
        ramp = (xx * np.cos(a := rng.uniform(0, 2 * np.pi)) + yy * np.sin(a)) / size
        img = c0[:, None, None] + (c1 - c0)[:, None, None] * ramp[None]
        for _ in range(3):
            by, bx = rng.uniform(0, size, 2)
            img += rng.uniform(-0.12, 0.12, (3, 1, 1)) * np.exp(-((yy - by) ** 2 + (xx - bx) ** 2) / (0.08 * size**2))
        # the object: an ellipse of random axes and angle filled with the class texture in two colours
        ry, rx = rng.uniform(0.2, 0.32, 2) * size
        cy, cx = rng.uniform(max(ry, rx) + 1, size - max(ry, rx) - 1, 2)
        t = rng.uniform(0, np.pi)
        u, v = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t), -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
        mask = (u / rx) ** 2 + (v / ry) ** 2 <= 1
        pattern = _texture(TEXTURES[labels[i]], yy, xx, cy, cx, rng)
        light, dark = rng.uniform(0.6, 1.0, 3), rng.uniform(0.0, 0.3, 3)
        img[:, mask] = np.where(pattern[mask], light[:, None], dark[:, None])
        img += rng.normal(0, 0.04, img.shape)
        images[i], masks[i] = np.clip(img, 0, 1), mask
    return images, labels, masks


class TexturesDataModule(GeneratedScenesDataModule):
    name = "textures"
    class_names = list(TEXTURES)
    mean = (0.35, 0.35, 0.35)
    std = (0.25, 0.25, 0.25)
    seed_offset = 500  # never the random stream of a shapes split

    def render(self, n: int, seed: int):
        return render_textures(n, self.input_size, seed)
