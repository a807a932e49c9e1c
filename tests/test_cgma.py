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


def test_single_layer_conditions_keep_the_layers_at_the_same_positions():
    cams = torch.rand(2, 10, 4, 4)
    single = cgma(cams, k=4, cumulative=False)
    positions = cgma_positions(10, 4)
    torch.testing.assert_close(single, cams[:, [j - 1 for j in positions]])
    torch.testing.assert_close(single[:, -1], cams[:, -1])  # the last condition is the target itself
    excluded = cgma(cams, k=4, exclude_target_layer=True, cumulative=False)
    torch.testing.assert_close(excluded, cams[:, [j - 1 for j in cgma_positions(9, 4)]])
    backward = cgma(cams, k=4, order="backward", cumulative=False)
    torch.testing.assert_close(backward[:, 0], cams[:, -1])


def test_explain_uses_the_cgma_settings_a_gan_was_trained_with():
    from types import SimpleNamespace

    from cgmagan.backbones import build_backbone
    from cgmagan.cam import cgma_settings
    from cgmagan.explanation import explain, gan_settings

    class Echo(torch.nn.Module):
        """A stand-in GAN whose map is its last condition map, with the description a checkpoint carries."""

        def __init__(self, cumulative: bool):
            super().__init__()
            self.hparams = {"description": {"map_size": 8, "cgma": {"k": 3, "order": "forward",
                                            "exclude_target_layer": False, "cumulative": cumulative}}}  # fmt: skip

        def forward(self, image, cgmas):
            return cgmas[:, -1]

    torch.manual_seed(0)
    model = build_backbone("small_vgg", 3, 4).eval()
    images = torch.rand(2, 3, 32, 32)
    single = explain(model, images, Echo(cumulative=False))
    running = explain(model, images, Echo(cumulative=True))
    assert single.cgmas.shape == running.cgmas.shape == (2, 3, 8, 8)
    torch.testing.assert_close(single.gan, single.gradcam)  # the last single layer is the target
    assert not torch.allclose(running.gan, running.gradcam)  # the mean of every layer is not
    old = SimpleNamespace(hparams={"description": {"map_size": 8, "cgma": {"k": 3, "order": "forward",
                                                                           "exclude_target_layer": False}}})  # fmt: skip
    assert cgma_settings(gan_settings(old))["cumulative"] is True  # checkpoints from before the switch
