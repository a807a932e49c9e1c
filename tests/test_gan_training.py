"""The GAN's training step on a fixed tiny batch: every weight of D and G learns, and L1 falls."""

from functools import partial

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from cgmagan.archs import GSFTGenerator, LSFTGenerator, PatchDiscriminator
from cgmagan.models.gan_module import CGMAGAN

K, S = 4, 16
GENERATORS = {"lsft": partial(LSFTGenerator, K, nf=8, cond_nf=4, cond_hidden=8),
              "gsft": partial(GSFTGenerator, K, nf=8, cond_nf=4, cond_hidden=8, num_blocks=2)}  # fmt: skip


def fixed_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    cgmas = torch.rand(4, K, S, S, generator=g)
    return {"image": torch.rand(4, 3, S, S, generator=g), "cgma": cgmas, "target": cgmas[:, -1]}


def fit(gan: CGMAGAN, steps: int) -> None:
    batch = fixed_batch()
    loader = DataLoader([batch] * steps, batch_size=None)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(gan, train_dataloaders=loader)


def gan_of(name: str) -> CGMAGAN:
    adam = partial(torch.optim.Adam, lr=2e-3, betas=(0.5, 0.999))
    return CGMAGAN(GENERATORS[name](), PatchDiscriminator(3, ndf=8, n_layers=2), optimizer_g=adam, optimizer_d=adam)


@pytest.mark.parametrize("name", list(GENERATORS))
def test_one_training_step_updates_every_weight_of_d_and_g(name):
    torch.manual_seed(0)
    gan = gan_of(name)
    before = {n: p.detach().clone() for n, p in gan.named_parameters()}
    fit(gan, steps=1)
    # Adam moves a weight by ~lr whenever its gradient is non-zero, and not at all otherwise
    frozen = [n for n, p in gan.named_parameters() if torch.equal(p, before[n])]
    assert frozen == []
    assert {n.split(".")[0] for n in before} == {"generator", "discriminator"}


@pytest.mark.parametrize("name", list(GENERATORS))
def test_training_on_a_fixed_batch_halves_the_l1_loss(name):
    torch.manual_seed(0)
    gan = gan_of(name)
    batch = fixed_batch()

    def l1() -> float:
        with torch.no_grad():
            return float((gan(batch["image"], batch["cgma"]) - batch["target"]).abs().mean())

    start = l1()
    fit(gan, steps=120)
    assert l1() <= 0.5 * start, (start, l1())
