"""Generated RGB scenes: one object of a few shape classes on a cluttered background, with
its mask, for ground-truth localization. Deterministic from the seed."""

from __future__ import annotations

import functools

import numpy as np

from cgmagan.data.base import GeneratedScenesDataModule

SHAPES = ("circle", "square", "triangle", "cross")


def _shape_mask(kind: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    dy, dx = yy - cy, xx - cx
    if kind == "circle":
        return dy**2 + dx**2 <= r**2
    if kind == "square":
        side = r * 0.85  # same area scale as the circle, roughly
        return (np.abs(dy) <= side) & (np.abs(dx) <= side)
    if kind == "triangle":  # apex up
        t = (dy + r) / (2 * r)  # 0 at the apex row, 1 at the base
        return (t >= 0) & (t <= 1) & (np.abs(dx) <= t * r)
    if kind == "cross":
        arm = r / 3
        return ((np.abs(dy) <= arm) & (np.abs(dx) <= r)) | ((np.abs(dx) <= arm) & (np.abs(dy) <= r))
    raise ValueError(f"unknown shape {kind!r}")


@functools.lru_cache(maxsize=6)  # the combinations sharing a dataset render it once; callers copy
def render_scenes(n: int, size: int, seed: int, clutter: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` scenes: images [n, 3, size, size] float32 in [0, 1], labels [n], masks [n, size, size]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((n, 3, size, size), np.float32)
    masks = np.empty((n, size, size), bool)
    labels = rng.integers(0, len(SHAPES), n)
    for i in range(n):
        # background: a dim colour gradient, noise, and clutter thinner than any object
        c0, c1 = rng.uniform(0.0, 0.45, 3), rng.uniform(0.0, 0.45, 3)
        ramp = (xx * np.cos(a := rng.uniform(0, 2 * np.pi)) + yy * np.sin(a)) / size
        img = c0[:, None, None] + (c1 - c0)[:, None, None] * ramp[None]
        for _ in range(clutter):
            colour = rng.uniform(0.1, 0.8, 3)
            y0, x0 = rng.uniform(0, size, 2)
            if rng.random() < 0.5:  # a thin line segment
                ang, length = rng.uniform(0, np.pi), rng.uniform(0.2, 0.5) * size
                t = np.clip(((xx - x0) * np.cos(ang) + (yy - y0) * np.sin(ang)) / length, 0, 1)
                dist = np.hypot(xx - x0 - t * length * np.cos(ang), yy - y0 - t * length * np.sin(ang))
                sel = dist < 0.6
            else:  # a small blob
                sel = (xx - x0) ** 2 + (yy - y0) ** 2 <= rng.uniform(0.8, 1.6) ** 2
            img[:, sel] = colour[:, None]
        r = rng.uniform(0.18, 0.3) * size
        cy, cx = rng.uniform(r + 1, size - r - 1, 2)
        mask = _shape_mask(SHAPES[labels[i]], yy, xx, cy, cx, r)
        colour = rng.uniform(0.55, 1.0, 3)
        colour[rng.integers(3)] = rng.uniform(0.0, 0.3)  # saturated, never grey
        img[:, mask] = colour[:, None]
        img += rng.normal(0, 0.04, img.shape)
        images[i], masks[i] = np.clip(img, 0, 1), mask
    return images, labels, masks


class ShapesDataModule(GeneratedScenesDataModule):
    name = "shapes"
    class_names = list(SHAPES)
    mean = (0.4, 0.4, 0.4)
    std = (0.25, 0.25, 0.25)

    def __init__(self, input_size: int = 32, split_sizes=(1600, 200, 400), clutter: int = 6, **kwargs):
        super().__init__(input_size, split_sizes, **kwargs)
        self.clutter = clutter

    def render(self, n: int, seed: int):
        return render_scenes(n, self.input_size, seed, self.clutter)
