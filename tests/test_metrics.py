import torch
from torch import nn

from cgmagan.metrics import faithfulness as fa
from cgmagan.metrics.agreement import (
    both_empty,
    dice_at_threshold,
    dice_matched_area,
    mean_absolute_error,
    pearson,
    soft_dice,
    top_area_mask,
)


def test_dice_at_threshold_by_hand():
    pred = torch.tensor([[[0.9, 0.9], [0.1, 0.1]], [[0.0, 0.0], [0.0, 0.0]], [[0.6, 0.0], [0.0, 0.0]]])
    target = torch.tensor([[[0.9, 0.1], [0.1, 0.1]], [[0.2, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.7]]])
    # image 0: |P|=2, |T|=1, overlap 1 -> 2/3; image 1: both empty -> 1; image 2: no overlap -> 0
    torch.testing.assert_close(dice_at_threshold(pred, target), torch.tensor([2 / 3, 1.0, 0.0]))
    assert both_empty(pred, target).tolist() == [False, True, False]


def test_soft_dice_pearson_and_mae():
    a = torch.rand(3, 8, 8)
    torch.testing.assert_close(soft_dice(a, a), torch.ones(3))
    torch.testing.assert_close(pearson(a, 2 * a + 1), torch.ones(3))
    torch.testing.assert_close(pearson(a, -a), -torch.ones(3))
    torch.testing.assert_close(mean_absolute_error(a, a + 0.25), torch.full((3,), 0.25))
    assert soft_dice(a, 1 - a).mean() < 0.9


def test_matched_area_dice_ignores_brightness():
    a = torch.rand(2, 10, 10)
    assert top_area_mask(a, 0.2).sum((1, 2)).tolist() == [20.0, 20.0]
    torch.testing.assert_close(dice_matched_area(a, a * 0.1), torch.ones(2))  # dimmer, same ranking
    assert dice_at_threshold(a, a * 0.1).mean() < 0.5  # what Dice@0.5 says about the same pair


def test_average_drop_increase_and_win_by_hand():
    y = torch.tensor([0.8, 0.5, 0.4, 0.9])
    o_a = torch.tensor([0.4, 0.6, 0.4, 0.0])
    o_b = torch.tensor([0.6, 0.5, 0.2, 0.0])
    # drops: A = [0.5, 0 (increase), 0, 1.0] -> 37.5 %; increase in 1 of 4 images
    assert abs(fa.average_drop(y, o_a) - 37.5) < 1e-4
    assert fa.increase_in_confidence(y, o_a) == 25.0
    r_a, r_b = fa.relative_drop(y, o_a), fa.relative_drop(y, o_b)
    # A wins images 2 and 3, loses 1, ties 4 -> (2 + 0.5) / 4
    assert fa.win_percent(r_a, r_b) == 62.5
    assert fa.win_percent(r_a, r_b) + fa.win_percent(r_b, r_a) == 100.0


class Brightness(nn.Module):
    """A 'classifier' whose class-0 logit is the mean brightness of the top-left quadrant."""

    def forward(self, x):
        s = x[:, :, :4, :4].mean((1, 2, 3)) * 10
        return torch.stack([s, torch.zeros_like(s)], 1)


def test_deletion_and_insertion_reward_the_right_ranking():
    x = torch.zeros(2, 3, 8, 8)
    x[:, :, :4, :4] = 1  # the evidence; blurring spreads it out
    good = torch.zeros(2, 8, 8)
    good[:, :4, :4] = 1  # points at what the model uses
    bad = 1 - good
    classes = torch.zeros(2, dtype=torch.long)
    del_good, ins_good = fa.deletion_insertion_auc(Brightness(), x, good, classes, steps=8)
    del_bad, ins_bad = fa.deletion_insertion_auc(Brightness(), x, bad, classes, steps=8)
    assert (del_good < del_bad).all()
    assert (ins_good > ins_bad).all()
