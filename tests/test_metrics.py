import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from cgmagan.methods import METHODS, ExplanationMethod
from cgmagan.metrics import faithfulness as fa
from cgmagan.metrics.agreement import (
    both_empty,
    dice_at_threshold,
    dice_matched_area,
    iou_at_threshold,
    mean_absolute_error,
    pearson,
    soft_dice,
    spearman,
    top_area_mask,
)
from cgmagan.models.evaluation_module import ExplanationEvaluator


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
    assert abs(fa.drop(y, o_a).mean() - 37.5) < 1e-4
    assert fa.increase(y, o_a).mean() == 25.0
    r_a, r_b = fa.relative_drop(y, o_a), fa.relative_drop(y, o_b)
    # A wins images 2 and 3, loses 1, ties 4 -> (2 + 0.5) / 4
    assert fa.win(r_a, r_b).mean() == 62.5
    assert fa.win(r_a, r_b).mean() + fa.win(r_b, r_a).mean() == 100.0


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
    # the curves' points batched a few at a time give the same numbers as all in one call
    chunked = fa.deletion_insertion_auc(Brightness(), x, good, classes, steps=8, batch_images=4)
    torch.testing.assert_close(chunked, (del_good, ins_good))


def test_iou_and_spearman_by_hand_and_against_scipy():
    pred = torch.tensor([[[0.9, 0.9], [0.1, 0.6]]])
    target = torch.tensor([[[0.9, 0.1], [0.7, 0.6]]])
    torch.testing.assert_close(iou_at_threshold(pred, target), torch.tensor([2 / 4]))  # {a, d} vs {a, c, d}
    torch.testing.assert_close(iou_at_threshold(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2)), torch.ones(1))
    a, b = torch.rand(4, 6, 6), torch.rand(4, 6, 6)
    a[0, :3] = 0  # tied pixels, as in ReLU'd maps
    b[3] = 0.5  # a constant map
    expected = [spearmanr(a[i].flatten(), b[i].flatten()).statistic for i in range(3)] + [0.0]
    torch.testing.assert_close(spearman(a, b), torch.tensor(expected, dtype=torch.float32), atol=1e-5, rtol=1e-5)


def test_evaluator_scores_equal_their_definitions_written_out():
    """One batch through ExplanationEvaluator.test_step on a small hand-built classifier."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 3)).eval()  # fmt: skip
    n, steps = 5, 4
    x, target = torch.rand(n, 3, 8, 8), torch.rand(n, 8, 8)
    ramp = torch.linspace(0, 1, 64).view(8, 8)  # distinct values: its top pixels are unambiguous
    methods = [METHODS["gradcam"], ExplanationMethod("ones", "", lambda ev, b, c: torch.ones_like(b["target"])),
               ExplanationMethod("ramp", "", lambda ev, b, c: ramp.expand(len(b["target"]), -1, -1))]  # fmt: skip
    ev = ExplanationEvaluator(["toy"], [net], ["0"], [False], gan=nn.Identity(), mean_train_target=torch.zeros(8, 8),
                              linear_weights=torch.zeros(4), methods=methods, deletion_steps=steps, area=0.2)  # fmt: skip
    with torch.no_grad():
        classes = net(x).argmax(1)
        prob = lambda images: net(images).softmax(1)[torch.arange(n), classes]  # noqa: E731
        y = prob(x)
        batch = {"input": x, "target": target, "pred": classes, "index": torch.arange(n),
                 "in_auc": torch.tensor([True, True, False, False, False])}  # fmt: skip
        ev.test_step(batch, 0)
    result = ev.scores[0].compute()
    assert (result["n_images"], result["n_auc"]) == (n, 2)
    got = result["methods"]

    with torch.no_grad():
        r_gradcam = (y - prob(x * target[:, None])) / y
        top = lambda frac: (ramp >= ramp.flatten().sort().values[64 - round(frac * 64)]).float()  # noqa: E731
        o50, o15 = prob(x * (ramp * top(0.5))), prob(x * (ramp * top(0.15)))  # TAME / L-CAM: the map on its top share
        o20 = prob(x * top(0.2))  # matched area: a binary mask
        # deletion written out: the ramp's top pixels set to 0, steps + 1 points, trapezoid rule
        curve = [prob(x * (1 - top(s / steps)) if s else x)[:2] for s in range(steps + 1)]
        deletion = sum((curve[s] + curve[s + 1]) / 2 / steps for s in range(steps)).mean()
        # insertion: the ramp's top pixels revealed on RISE's blurred copy
        blurred = gaussian_blur(x, kernel_size=[11, 11], sigma=[5.0, 5.0])
        curve = [prob(blurred * (1 - top(s / steps)) + x * top(s / steps) if s else blurred)[:2] for s in range(steps + 1)]
        insertion = sum((curve[s] + curve[s + 1]) / 2 / steps for s in range(steps)).mean()
    assert got["ones"]["average_drop"] == 0 and got["ones"]["increase_in_confidence"] == 0  # E = x: O = Y
    assert got["ones"]["win_vs_gradcam"] == pytest.approx(float(100 * ((0 < r_gradcam) + 0.5 * (r_gradcam == 0)).float().mean()))
    assert got["gradcam"]["average_drop"] == pytest.approx(float(100 * r_gradcam.clamp_min(0).mean()), rel=1e-5)
    assert got["gradcam"]["win_vs_gradcam"] == 50 and got["gradcam"]["dice"] == 1 and got["gradcam"]["mae"] == 0
    assert got["ramp"]["average_drop_top50"] == pytest.approx(float(100 * ((y - o50) / y).clamp_min(0).mean()), rel=1e-5)
    assert got["ramp"]["increase_in_confidence_top15"] == pytest.approx(float(100 * (o15 > y).float().mean()))
    assert got["ramp"]["average_drop_matched_area"] == pytest.approx(float(100 * ((y - o20) / y).clamp_min(0).mean()), rel=1e-5)
    assert got["ramp"]["deletion_auc"] == pytest.approx(float(deletion), rel=1e-5)
    assert got["ramp"]["insertion_auc"] == pytest.approx(float(insertion), rel=1e-5)
    dice = [2 * ((ramp >= 0.5) & (t >= 0.5)).sum() / ((ramp >= 0.5).sum() + (t >= 0.5).sum()) for t in target]
    assert got["ramp"]["dice"] == pytest.approx(float(torch.stack(dice).mean()), rel=1e-6)


class SlotTwo(nn.Module):
    """A stand-in GAN whose map is CGMA slot 2."""

    def forward(self, image, cgmas):
        return cgmas[:, 1]


def test_condition_importance_finds_the_one_slot_the_gan_uses():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    ev = ExplanationEvaluator(["toy"], [net], ["0"], [False], gan=SlotTwo(), mean_train_target=torch.zeros(8, 8),
                              linear_weights=torch.zeros(4), methods=[METHODS["gradcam"], METHODS["gan"]], deletion_steps=2, num_cgmas=3)  # fmt: skip
    cgmas = torch.rand(4, 3, 8, 8)
    partner = torch.tensor([2, 3, 1, 0])  # each image's partner (the dataset's derangement)
    batch = {"input": torch.rand(4, 3, 8, 8), "image": torch.rand(4, 3, 8, 8), "cgma": cgmas, "target": cgmas[:, 1],
             "pred": torch.zeros(4, dtype=torch.long), "index": torch.arange(4), "in_auc": torch.ones(4, dtype=torch.bool),
             "other_cgma": cgmas[partner]}  # fmt: skip
    with torch.no_grad():
        ev.test_step(batch, 0)
    result = ev.slots[0].compute()
    zeros, other = result["zeros"], result["other_image"]
    assert result["n_images"] == 4 and [s["slot"] for s in zeros] == [1, 2, 3]
    assert zeros[0]["mean_abs_change"] == zeros[2]["mean_abs_change"] == 0 and zeros[0]["dice"] == zeros[2]["dice"] == 1
    assert zeros[1]["mean_abs_change"] == pytest.approx(float(cgmas[:, 1].mean()), rel=1e-6)
    assert zeros[1]["dice"] == 0  # an empty map against targets with pixels above 0.5
    swapped = cgmas[partner, 1]
    assert other[1]["mean_abs_change"] == pytest.approx(float((swapped - cgmas[:, 1]).abs().mean()), rel=1e-6)
    assert other[1]["dice"] == pytest.approx(float(dice_at_threshold(swapped, cgmas[:, 1]).mean()), rel=1e-6)


def test_the_partner_of_every_image_is_another_one_and_the_same_for_a_seed():
    from cgmagan.data.evaluation import derangement

    for n in (2, 3, 16):
        perm = derangement(n, seed=7)
        assert sorted(perm) == list(range(n)) and all(perm[i] != i for i in range(n))
        assert (derangement(n, seed=7) == perm).all()
    assert list(derangement(1, seed=0)) == [0]


def test_linear_cgma_baseline_recovers_the_target_exactly_when_k_equals_the_number_of_layers():
    from cgmagan.cam import cgma
    from cgmagan.linear_baseline import fit, predict

    torch.manual_seed(0)
    layers = 6
    cams = torch.rand(10, layers, 8, 8)  # the target is the last layer's map
    cgmas = cgma(cams, k=layers)  # C_j = mean of the first j maps
    weights = fit(cgmas, cams[:, -1])
    expected = torch.zeros(layers + 1)
    expected[-3], expected[-2] = -(layers - 1), layers  # target = L·C_L − (L−1)·C_(L−1), no bias
    assert torch.allclose(weights, expected, atol=1e-4)
    assert torch.allclose(predict(weights, cgmas), cams[:, -1], atol=1e-5)

    fewer = cgma(cams, k=3)  # K < L: only an approximation, but the best linear one
    w3 = fit(fewer, cams[:, -1])
    best = ((predict(w3, fewer) - cams[:, -1]) ** 2).mean()
    for nudge in torch.eye(4) * 0.05:
        assert ((predict(w3 + nudge, fewer) - cams[:, -1]) ** 2).mean() >= best


def test_linear_cgma_fit_streams_over_cache_shards_like_one_fit():
    from cgmagan.data.cgma_store import ShardedArrays
    from cgmagan.linear_baseline import fit, fit_on_cache

    torch.manual_seed(1)
    cgmas, targets = torch.rand(12, 4, 8, 8), torch.rand(12, 8, 8)
    shards = [{"cgma": ShardedArrays([cgmas[:5].half().numpy(), cgmas[5:9].half().numpy()]),
               "target": ShardedArrays([targets[:5].half().numpy(), targets[5:9].half().numpy()])},
              {"cgma": ShardedArrays([cgmas[9:].half().numpy()]), "target": ShardedArrays([targets[9:].half().numpy()])}]  # fmt: skip
    assert torch.allclose(fit_on_cache(shards), fit(cgmas.half().float(), targets.half().float()), atol=1e-5)


def test_road_equals_the_grad_cam_packages_on_tie_free_maps_and_does_not_depend_on_batching():
    """On 16x16 maps with distinct values the package's percentile thresholds remove the same pixels
    as an exact count (p % removed <-> its percentile 100 - p), so the scores are the package's."""
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirstAverage, ROADMostRelevantFirstAverage
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 3)).eval()  # fmt: skip
    x, maps = torch.rand(3, 3, 16, 16), torch.randperm(3 * 256).view(3, 16, 16).float() / 768  # distinct at 1e-4
    classes, seeds, removed = torch.tensor([0, 2, 1]), torch.tensor([11, 12, 13]), [10, 30, 50, 70, 90]
    morf, lerf = fa.road(net, x, maps, classes, removed, seeds)
    kept = [100 - p for p in removed]  # the package's percentiles, in our order (the same noise draws)
    for i in range(3):
        for metric, ours in ((ROADMostRelevantFirstAverage(kept), morf), (ROADLeastRelevantFirstAverage(kept), lerf)):
            torch.manual_seed(int(seeds[i]))
            theirs = metric(x[i : i + 1], maps[i : i + 1].numpy(), [ClassifierOutputSoftmaxTarget(int(classes[i]))], net)
            assert float(ours[i]) == pytest.approx(float(theirs[0]), abs=1e-6)
    alone = fa.road(net, x[2:], maps[2:], classes[2:], removed, seeds[2:])
    assert float(alone[0][0]) == pytest.approx(float(morf[2]), abs=1e-6) and float(alone[1][0]) == pytest.approx(float(lerf[2]), abs=1e-6)
    assert fa.road(net, x, maps, classes, removed, seeds + 1)[0].tolist() != morf.tolist(), "the seed is used"


def test_road_removes_exactly_the_stated_share_of_a_map_with_a_tied_plateau(monkeypatch):
    """Grad-CAM's ReLU leaves a plateau of exact zeros (here 3/4 of the map): 10 % MoRF removes 26
    of 256 pixels (the package's threshold would take every pixel), LeRF 10 % removes 26 of the
    plateau, chosen at random, not a band of rows."""
    from cgmagan.metrics.imputation import NoisyLinearImputation

    removed_masks = []
    impute = NoisyLinearImputation.__call__

    def recording(self, img, mask):
        removed_masks.append((mask == 0).clone())
        return impute(self, img, mask)

    monkeypatch.setattr(NoisyLinearImputation, "__call__", recording)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2)).eval()
    heatmap = torch.zeros(1, 16, 16)
    heatmap[0, :8, :8] = torch.rand(8, 8) + 0.1  # 64 distinct positive pixels, 192 tied zeros
    fa.road(net, torch.rand(1, 3, 16, 16), heatmap, torch.tensor([0]), [10, 50], torch.tensor([5]))
    morf10, morf50, lerf10, lerf50 = removed_masks
    assert [int(m.sum()) for m in removed_masks] == [26, 128, 26, 128]
    assert bool((heatmap[0][morf10] > 0).all()) and int((heatmap[0][morf50] > 0).sum()) == 64  # the top first
    assert bool((heatmap[0][lerf10] == 0).all()) and bool((heatmap[0][lerf50] == 0).all())
    rows_touched = lerf10.any(1).sum()
    assert rows_touched > 8, "plateau ties broken at random across the plateau, not row by row"


@pytest.mark.parametrize("channels,removed", [(3, 0.1), (3, 0.9), (1, 0.5)])
def test_the_imputation_is_the_grad_cam_packages_to_the_bit(channels, removed):
    """Its system (matrix and right-hand side), and the imputed image with the same noise seed, equal
    the package's NoisyLinearImputer's, border pixels included, for grey and colour images."""
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer, neighbors_weights

    from cgmagan.metrics.imputation import NoisyLinearImputation, sparse_system

    g = torch.Generator().manual_seed(channels)
    img = torch.rand(channels, 12, 10, generator=g)
    mask = (torch.rand(12, 10, generator=g) >= removed).float()
    mask[0, 0] = mask[-1, -1] = 0  # corners: neighbours outside the image
    ours, b = sparse_system(mask.numpy(), img.numpy())
    theirs, b_theirs = NoisyLinearImputer.setup_sparse_system(mask.numpy(), img.numpy(), neighbors_weights)
    assert ours.shape == theirs.shape == (int((mask == 0).sum()),) * 2
    assert np.array_equal(ours.toarray(), theirs.toarray()) and np.array_equal(b, b_theirs)
    torch.manual_seed(3)
    imputed = NoisyLinearImputation()(img, mask)
    torch.manual_seed(3)
    assert torch.equal(imputed, NoisyLinearImputer()(img, mask))
    assert torch.equal(imputed[:, mask == 1], img[:, mask == 1]) and not torch.equal(imputed, img)
