"""Figures of cgmagan/report.py."""

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from cgmagan.report import overlay_grid


def test_overlay_grid_stacks_each_columns_rows_with_white_gaps_and_maps_resized_to_the_image():
    """One axes per column (and one for the labels): its picture holds the rows top to bottom with white
    gaps; a map of another size is resized to its image's, the gaps left transparent."""
    g = torch.Generator().manual_seed(0)
    images, maps = torch.rand(3, 3, 32, 32, generator=g), torch.rand(3, 16, 16, generator=g)
    fig = overlay_grid(images, {"input": None, "map": maps}, title="t", row_labels=["a", "b", "c"])
    labels, plain, overlaid = fig.axes
    assert [ax.get_title() for ax in (plain, overlaid)] == ["input", "map"]
    assert [t.get_text() for t in labels.texts] == ["a", "b", "c"]
    picture, heat = overlaid.images[0].get_array(), np.ma.filled(overlaid.images[1].get_array(), np.nan)
    gap = (len(picture) - 3 * 32) // 2
    assert gap >= 1 and picture.shape == (3 * 32 + 2 * gap, 32, 3) and heat.shape == picture.shape[:2]
    resized = F.interpolate(maps[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0].numpy()
    for i in range(3):
        rows = slice(i * (32 + gap), i * (32 + gap) + 32)
        np.testing.assert_allclose(picture[rows], images[i].permute(1, 2, 0).numpy(), atol=1e-6)
        np.testing.assert_allclose(heat[rows], resized[i], atol=1e-6)
    between = slice(32, 32 + gap)
    assert (picture[between] == 1).all() and np.isnan(heat[between]).all()
    assert [t.get_text() for t in fig.texts] == ["t"]
    plt.close(fig)
