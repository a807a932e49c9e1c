import pytest
import torch

from cgmagan.archs import GSFTGenerator, LSFTGenerator, PatchDiscriminator
from cgmagan.archs.sft_arch import SFTLayer


def test_sft_layer_is_scale_and_shift():
    sft = SFTLayer(nf=4, cond_nf=3)
    feat, cond = torch.rand(2, 4, 5, 5), torch.rand(2, 3, 5, 5)
    torch.testing.assert_close(sft(feat, cond), feat * (1 + sft.scale(cond)) + sft.shift(cond))


def test_generator_shapes_and_range():
    image, cgmas = torch.randn(2, 3, 32, 32), torch.rand(2, 8, 32, 32)
    for gen in (LSFTGenerator(8, nf=8, cond_nf=4, cond_hidden=8), GSFTGenerator(8, nf=8, cond_nf=4, cond_hidden=8, num_blocks=3)):
        out = gen(image, cgmas)
        assert out.shape == (2, 1, 32, 32)
        assert out.min() >= 0 and out.max() <= 1


def test_lsft_block_group_k_receives_the_condition_of_cgma_k():
    torch.manual_seed(0)
    gen = LSFTGenerator(4, nf=8, cond_nf=4, cond_hidden=8, sft_per_group=2).eval()
    image, cgmas = torch.randn(2, 3, 16, 16), torch.rand(2, 4, 16, 16)
    seen = {}
    hooks = [
        block.sft0.register_forward_hook(lambda m, args, out, key=(k, b): seen.__setitem__(key, args[1]))
        for k, group in enumerate(gen.groups)
        for b, block in enumerate(group)
    ]
    gen(image, cgmas)
    for h in hooks:
        h.remove()
    assert len(seen) == 8
    for (k, _), cond in seen.items():
        torch.testing.assert_close(cond, gen.condition(cgmas[:, k : k + 1]))
    # and changing CGMA k changes the output only through group k
    changed = cgmas.clone()
    changed[:, 3] = 0
    with torch.no_grad():
        before = gen.conditions(cgmas)
        after = gen.conditions(changed)
    assert torch.equal(before[:, :3], after[:, :3]) and not torch.equal(before[:, 3], after[:, 3])


def test_gsft_uses_all_maps_as_one_condition():
    gen = GSFTGenerator(8, nf=8, cond_nf=4, cond_hidden=8, num_blocks=2)
    assert gen.condition.body[1].in_channels == 8


def test_discriminator_learns():
    disc = PatchDiscriminator(3, ndf=8, n_layers=2)
    logits = disc(torch.randn(4, 3, 32, 32), torch.rand(4, 1, 32, 32))
    assert logits.ndim == 4 and logits.shape[1] == 1
    torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits)).backward()
    grads = [p.grad for p in disc.parameters()]
    assert all(g is not None for g in grads)
    assert all(g.abs().sum() > 0 for g in grads)


def test_cgma_skip_adds_a_linear_function_of_the_cgmas_to_the_output_logit():
    torch.manual_seed(0)
    image, cgmas = torch.randn(2, 3, 16, 16), torch.rand(2, 4, 16, 16)
    for gen in (LSFTGenerator(4, nf=8, cond_nf=4, cond_hidden=8, cgma_skip=True),
                GSFTGenerator(4, nf=8, cond_nf=4, cond_hidden=8, num_blocks=2, cgma_skip=True)):  # fmt: skip
        last = gen.head.out[-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)  # the trunk's logit is now 0: only the skip is left
        weights, bias = gen.head.skip.weight.view(4), gen.head.skip.bias
        expected = torch.sigmoid((cgmas * weights.view(1, 4, 1, 1)).sum(1, keepdim=True) + bias)
        with torch.no_grad():
            torch.testing.assert_close(gen(image, cgmas), expected)
    plain = LSFTGenerator(4, nf=8, cond_nf=4, cond_hidden=8)
    assert plain.head.skip is None


def test_linear_output_starts_at_the_linear_baseline_and_pulls_pixels_beyond_the_range_back_only():
    """With ``linear_output`` the trunk's last conv starts at zero, so after ``start_at(w)`` the map
    is linear_baseline.predict(w, cgmas) exactly (clamped to [0, 1]); a pixel beyond the range gets
    the gradient that would bring it back inside (a plain clamp would give it none), not one that
    drives it further out."""
    from cgmagan import linear_baseline

    torch.manual_seed(0)
    image, cgmas = torch.randn(2, 3, 16, 16), torch.rand(2, 4, 16, 16)
    weights = torch.tensor([0.9, -0.4, 0.7, 0.3, -0.1])  # sums beyond 1 and below 0 occur
    for gen in (LSFTGenerator(4, nf=8, cond_nf=4, cond_hidden=8, cgma_skip=True, linear_output=True),
                GSFTGenerator(4, nf=8, cond_nf=4, cond_hidden=8, num_blocks=2, cgma_skip=True, linear_output=True)):  # fmt: skip
        gen.head.start_at(weights)
        expected = linear_baseline.predict(weights, cgmas)
        out = gen(image, cgmas)[:, 0]
        torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
        assert out.min() == 0 and out.max() == 1  # the clamp was reached on both sides
        raw = (cgmas * weights[:4].view(1, 4, 1, 1)).sum(1) + weights[4]
        above, below = raw > 1, raw < 0
        (out * above).sum().backward(retain_graph=True)  # lowering these pixels would move them back inside: the gradient passes
        assert gen.head.skip.bias.grad.item() == pytest.approx(float(above.sum()))
        gen.zero_grad()
        (out * below).sum().backward(retain_graph=True)  # lowering them further would not: none passes
        assert gen.head.skip.bias.grad.item() == 0
        (-(out * below).sum()).backward()  # raising them would
        assert gen.head.skip.bias.grad.item() == pytest.approx(-float(below.sum()))
    with pytest.raises(ValueError, match="cgma_skip"):
        LSFTGenerator(4, nf=8, cond_nf=4, cond_hidden=8, linear_output=True)
    with pytest.raises(ValueError, match="3 CGMA weights, the generator 4"):
        LSFTGenerator(4, nf=8, cond_nf=4, cond_hidden=8, cgma_skip=True).head.start_at(torch.zeros(4))
