"""Promise: a NaN or Inf stops training with an error naming the step, before it reaches the
weights, and no checkpoint with NaN weights is ever saved."""

import functools

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from cgmagan.archs import LSFTGenerator, PatchDiscriminator
from cgmagan.errors import NumericalError
from cgmagan.models.gan_module import CGMAGAN


class GANBatches(torch.utils.data.Dataset):
    """Random GAN batches of 4; once ``poison_epoch`` is reached, batch 1 has a NaN CGMA pixel."""

    def __init__(self, module: pl.LightningModule, n: int, poison_epoch: int):
        self.module, self.n, self.poison_epoch = module, n, poison_epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        cgma = torch.rand(4, 4, 16, 16)
        if self.module.current_epoch >= self.poison_epoch and i == 1:
            cgma[0, 0, 3, 3] = float("nan")
        return {"image": torch.rand(4, 3, 16, 16), "cgma": cgma, "target": torch.rand(4, 16, 16)}


def test_a_nan_in_gan_training_stops_at_its_step_and_no_saved_checkpoint_holds_nan(tmp_path):
    torch.manual_seed(0)
    adam = functools.partial(torch.optim.Adam, lr=1e-3)
    gan = CGMAGAN(LSFTGenerator(4, nf=8, cond_nf=4, cond_hidden=8), PatchDiscriminator(ndf=8, n_layers=1), adam, adam)
    train = DataLoader(GANBatches(gan, 3, poison_epoch=1), batch_size=None)
    val = DataLoader(GANBatches(gan, 1, poison_epoch=99), batch_size=None)
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/l1", save_last=True)
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_progress_bar=False, callbacks=[checkpoints],
                         default_root_dir=tmp_path, enable_model_summary=False)  # fmt: skip
    with pytest.raises(NumericalError, match=r"GAN loss not finite at epoch 1, step 8: .*the weights were not updated "
                                             r"with it and the checkpoints saved before it are in"):
        trainer.fit(gan, train, val)
    assert all(torch.isfinite(p).all() for p in gan.parameters()), "the NaN never reached the weights"
    saved = sorted((tmp_path / "ckpt").glob("*.ckpt"))
    assert saved, "checkpoints of the good steps were saved"
    for path in saved:
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), path.name
