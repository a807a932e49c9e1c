import pytest
import torch

from cgmagan.cam import cgma, cgma_positions


def test_positions_are_evenly_spaced_with_halves_rounded_up():
    assert cgma_positions(10, 8) == [1, 2, 4, 5, 6, 7, 9, 10]
    assert cgma_positions(3, 5) == [1, 2, 2, 3, 3]  # 1.5 -> 2, 2.5 -> 3
    assert cgma_positions(13, 1) == [13]
    assert cgma_positions(8, 8) == list(range(1, 9))


@pytest.mark.parametrize("layers,k", [(13, 8), (8, 8), (5, 3)])
def test_forward_cgma_is_the_running_mean_at_the_positions(layers, k):
    cams = torch.rand(2, layers, 6, 6)
    out = cgma(cams, k=k)
    assert out.shape == (2, k, 6, 6)
    for i, j in enumerate(cgma_positions(layers, k)):
        torch.testing.assert_close(out[:, i], cams[:, :j].mean(1))
    torch.testing.assert_close(out[:, -1], cams.mean(1))  # C_L averages every layer


def test_backward_order_starts_from_the_deepest_layer_and_target_can_be_excluded():
    cams = torch.rand(1, 6, 4, 4)
    back = cgma(cams, k=3, order="backward")
    torch.testing.assert_close(back[:, 0], cams[:, -1])  # the original code's first map: the answer
    excluded = cgma(cams, k=3, exclude_target_layer=True)
    torch.testing.assert_close(excluded[:, -1], cams[:, :-1].mean(1))
    with pytest.raises(ValueError):
        cgma(cams, order="sideways")
