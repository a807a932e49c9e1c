"""The GAN's training step on a fixed tiny batch: every weight of D and G learns, and L1 falls."""

import copy
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
ADAM = partial(torch.optim.Adam, lr=2e-3, betas=(0.5, 0.999))


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
    return CGMAGAN(GENERATORS[name](), PatchDiscriminator(3, ndf=8, n_layers=2), optimizer_g=ADAM, optimizer_d=ADAM)


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


@pytest.mark.parametrize("name", list(GENERATORS))
def test_channels_last_gan_computes_and_learns_what_the_contiguous_one_does(name, tmp_path):
    """gan.channels_last changes the memory layout only: from the same weights, the same maps and,
    after 10 training steps, the same weights (to float rounding); the networks stay in NHWC while
    training and come back in it from a checkpoint."""
    torch.manual_seed(0)
    plain = gan_of(name)
    nhwc = CGMAGAN(copy.deepcopy(plain.generator), copy.deepcopy(plain.discriminator), ADAM, ADAM, channels_last=True)
    convs = [p for p in nhwc.parameters() if p.dim() == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    spatial = [p for p in convs if p.shape[1] > 1 and p.shape[-1] > 1]  # (a 1x1 or 1-channel kernel is in both)
    assert spatial and not any(p.is_contiguous() for p in spatial)
    batch = fixed_batch()
    with torch.no_grad():
        torch.testing.assert_close(nhwc(batch["image"], batch["cgma"]), plain(batch["image"], batch["cgma"]))
    for gan in (plain, nhwc):
        torch.manual_seed(1)
        fit(gan, steps=10)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in nhwc.parameters() if p.dim() == 4)
    moved = [n for n, p in plain.named_parameters() if not torch.allclose(p, nhwc.get_parameter(n), atol=1e-4)]
    assert moved == []
    assert any(not torch.equal(p, q) for p, q in zip(plain.parameters(), nhwc.parameters()))  # the kernels differ
    path = tmp_path / "nhwc.ckpt"
    torch.save({"state_dict": nhwc.state_dict(), "hyper_parameters": dict(nhwc.hparams), "pytorch-lightning_version": pl.__version__}, path)
    loaded = CGMAGAN.load_from_checkpoint(path, generator=GENERATORS[name](), weights_only=False,
                                          discriminator=PatchDiscriminator(3, ndf=8, n_layers=2))
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in loaded.parameters() if p.dim() == 4)
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch["image"], batch["cgma"]), nhwc(batch["image"], batch["cgma"]))


def test_the_training_losses_are_logged_on_exactly_the_batches_lightning_writes(tmp_path):
    """The step logs only on the batches whose metrics Lightning writes (every log_every_n_steps, counted
    across epochs): the CSV gets a row of every training loss at each, as when logging every batch."""
    import csv

    from pytorch_lightning.loggers import CSVLogger

    torch.manual_seed(0)
    gan = gan_of("lsft")
    loader = DataLoader([fixed_batch()] * 7, batch_size=None)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=CSVLogger(tmp_path, name="", version=""),
                         log_every_n_steps=3, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(gan, train_dataloaders=loader)
    rows = [r for r in csv.DictReader(open(tmp_path / "metrics.csv")) if r.get("train/l1")]
    assert len(rows) == 14 // 3  # batches 3, 6, 9 and 12 of 14 (the second epoch's 2nd and 5th)
    assert all(r["train/loss_d"] and r["train/loss_g_adv"] for r in rows)
    assert [r["epoch"] for r in rows] == ["0", "0", "1", "1"]


def test_l1_only_training_leaves_d_untouched_and_still_learns():
    torch.manual_seed(0)
    gan = CGMAGAN(GENERATORS["lsft"](), PatchDiscriminator(3, ndf=8, n_layers=2), ADAM, ADAM, lambda_adv=0.0)
    d_before = {n: p.detach().clone() for n, p in gan.discriminator.named_parameters()}
    g_before = {n: p.detach().clone() for n, p in gan.generator.named_parameters()}
    fit(gan, steps=2)
    assert all(torch.equal(p, d_before[n]) for n, p in gan.discriminator.named_parameters())
    assert not any(torch.equal(p, g_before[n]) for n, p in gan.generator.named_parameters())


def test_without_the_image_the_map_does_not_depend_on_it():
    torch.manual_seed(0)
    adam = partial(torch.optim.Adam, lr=2e-3)
    blind = CGMAGAN(GENERATORS["lsft"](), PatchDiscriminator(3, ndf=8, n_layers=2), adam, adam, use_image=False)
    seeing = CGMAGAN(blind.generator, blind.discriminator, adam, adam)  # the same networks
    batch = fixed_batch()
    other = torch.rand_like(batch["image"])
    with torch.no_grad():
        assert torch.equal(blind(batch["image"], batch["cgma"]), blind(other, batch["cgma"]))
        assert not torch.allclose(seeing(batch["image"], batch["cgma"]), seeing(other, batch["cgma"]))


def test_spectral_norm_discriminator_has_unit_spectral_norm_and_no_batchnorm():
    torch.manual_seed(0)
    d = PatchDiscriminator(3, ndf=8, n_layers=2, spectral_norm=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    d.train()
    for _ in range(30):  # power iterations run in training-mode forwards
        d(torch.rand(2, 3, S, S), torch.rand(2, 1, S, S))
    d.eval()
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.05)


def test_linear_decay_schedule_steps_with_training_down_to_zero():
    from cgmagan.models.gan_module import linear_decay

    torch.manual_seed(0)
    gan = CGMAGAN(GENERATORS["lsft"](), PatchDiscriminator(3, ndf=8, n_layers=2), ADAM, ADAM,
                  scheduler=partial(linear_decay, decay_start=0.5))  # fmt: skip
    fit(gan, steps=8)
    # held for 4 steps, then 2e-3 * (8 - step) / 4 after each of steps 5..8: zero after the last
    assert [group["lr"] for opt in gan.optimizers() for group in opt.param_groups] == [0.0, 0.0]
    schedule = linear_decay(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), total_steps=8)
    lrs = []
    for _ in range(8):
        lrs.append(schedule.get_last_lr()[0])
        schedule.optimizer.step()
        schedule.step()
    assert lrs == [1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25]


class RecordGenerator(pl.Callback):
    """The generator's raw weights after every optimiser step."""

    def __init__(self):
        self.weights = []

    def on_train_batch_end(self, trainer, module, *_):
        self.weights.append({n: p.detach().clone() for n, p in module.generator.named_parameters()})


def test_ema_of_the_weights_is_what_training_leaves_in_the_module():
    """gan.ema_decay's callback: the trained module holds the running average of the weights
    (decay d: avg = d * avg + (1 - d) * w after each step), not the last ones."""
    from cgmagan.stages.gan import weight_averaging

    torch.manual_seed(0)
    gan = gan_of("lsft")
    record, decay = RecordGenerator(), 0.5
    loader = DataLoader([fixed_batch()] * 4, batch_size=None)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, callbacks=[record, weight_averaging(decay)])  # fmt: skip
    trainer.fit(gan, train_dataloaders=loader)
    name = "head.out.2.weight"
    expected = record.weights[0][name]
    for step in record.weights[1:]:
        expected = decay * expected + (1 - decay) * step[name]
    torch.testing.assert_close(dict(gan.generator.named_parameters())[name].detach(), expected)
    assert not torch.allclose(expected, record.weights[-1][name])


def test_gan_ema_decay_adds_the_averaging_callback_with_that_decay(tmp_path):
    from pytorch_lightning.callbacks import WeightAveraging

    from cgmagan.stages.gan import gan_callbacks
    from tests.conftest import compose_config

    assert not any(isinstance(c, WeightAveraging) for c in gan_callbacks(compose_config(tmp_path, ["gan=paper"])))
    assert not any(isinstance(c, WeightAveraging) for c in gan_callbacks(compose_config(tmp_path, ["gan.ema_decay=null"])))
    assert sum(isinstance(c, WeightAveraging) for c in gan_callbacks(compose_config(tmp_path))) == 1  # gan=small's 0.98
    (ema,) = [c for c in gan_callbacks(compose_config(tmp_path, ["gan.ema_decay=0.9"])) if isinstance(c, WeightAveraging)]
    averaged = [torch.zeros(3)]
    ema._kwargs["multi_avg_fn"](averaged, [torch.ones(3)], torch.tensor(1))  # in place: 0.9 * 0 + 0.1 * 1
    torch.testing.assert_close(averaged[0], torch.full((3,), 0.1))


def test_training_stops_on_a_plateau_or_at_the_cap_keeps_the_best_checkpoint_and_draws_its_curve(tmp_path):
    """Early stopping on the best checkpoint's score (val/l1): with min_delta 10 no epoch after the
    first improves, so patience 2 meets a plateau after the third, which cuts the learning rates
    (gan.lr_cuts 1), and the next plateau, two epochs later, stops; without patience the epoch cap ends it.
    The record says which, the best checkpoint is the one evaluated, and the curve's reference is
    the linear CGMA baseline fit on the training data and scored on the validation data."""
    import numpy as np
    from omegaconf import open_dict

    from cgmagan import linear_baseline
    from cgmagan.config import resolve_paths
    from cgmagan.metrics.agreement import dice_at_threshold
    from cgmagan.report import training_line
    from cgmagan.runtime import Runtime
    from cgmagan.stages.cgma import build_cgma_cache
    from cgmagan.stages.classifier import train_classifiers
    from cgmagan.stages.gan import train_gan
    from tests.conftest import TINY, compose_config

    cfg = compose_config(tmp_path, [*TINY, "combinations.unseen=[]", "combinations.train=[shapes/small_resnet]",
                                    "gan.max_epochs=8", "gan.patience=2", "gan.min_delta=10", "gan.lr_cuts=1",
                                    "gan.lr_cut_factor=0.25"])  # fmt: skip
    resolve_paths(cfg)
    runtime = Runtime.from_config(cfg)
    cache = build_cgma_cache(cfg, train_classifiers(cfg, runtime), runtime)
    gan = train_gan(cfg, cache, runtime)
    t = gan.training
    batches = min(len(cache.datamodule.train_dataloader()), cfg.trainer.limit_train_batches)  # per epoch
    assert cache.datamodule.train_batches() == len(cache.datamodule.train_dataloader())
    assert (t["stopped_by"], t["epochs"], t["steps"], t["lr_cuts"]) == ("plateau", 5, 5 * batches, [3 * batches])
    assert [h["epoch"] for h in t["history"]] == [0, 1, 2, 3, 4] and [h["step"] for h in t["history"]] == [batches * e for e in range(1, 6)]
    last = torch.load(tmp_path / "out" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    configured = [cfg.gan.module.optimizer_g.lr, cfg.gan.module.optimizer_d.lr]
    assert [o["param_groups"][0]["lr"] for o in last["optimizer_states"]] == pytest.approx([lr * 0.25 for lr in configured])  # G's and D's
    best = min(t["history"], key=lambda h: h["val/l1"])
    assert (t["best_epoch"], t["best_step"], t["best_score"]) == (best["epoch"], best["step"], best["val/l1"])
    assert gan.checkpoint.name == f"gan-epoch{best['epoch']:03d}.ckpt"
    assert (tmp_path / "out" / "figures" / "learning_curve.png").stat().st_size > 5_000

    arrays = {split: cache.datamodule.arrays("shapes/small_resnet", split) for split in ("train", "val")}
    cgmas = {s: torch.from_numpy(np.concatenate([np.array(p, dtype=np.float32) for p in a["cgma"].parts])) for s, a in arrays.items()}
    targets = {s: torch.from_numpy(np.concatenate([np.array(p, dtype=np.float32) for p in a["target"].parts])) for s, a in arrays.items()}
    fitted = linear_baseline.fit(cgmas["train"], targets["train"])
    predicted = linear_baseline.predict(fitted, cgmas["val"])
    assert t["linear_cgma"]["val/l1"] == pytest.approx(float((predicted - targets["val"]).abs().mean()), abs=1e-6)
    assert t["linear_cgma"]["val/dice"] == pytest.approx(float(dice_at_threshold(predicted, targets["val"]).mean()), abs=1e-6)
    assert (f"stopped because its validation score stopped improving again after its learning rates were cut at step "
            f"{3 * batches}; best val/l1") in training_line({"gan_training": t})  # fmt: skip

    with open_dict(cfg):
        cfg.paths.output_dir, cfg.gan.patience, cfg.gan.max_epochs = str(tmp_path / "capped"), None, 2
    capped = train_gan(cfg, cache, runtime).training
    assert (capped["stopped_by"], capped["epochs"], capped["steps"], len(capped["history"])) == ("max_epochs", 2, 2 * batches, 2)
    assert "because it reached the epoch cap (gan.max_epochs 2) before any plateau" in training_line({"gan_training": capped})

    # gan.start_at_linear (the default): before training the generator's map is linear_cgma's,
    # with the weights fit on the training data (the independent fit above)
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.gan.max_epochs = str(tmp_path / "untrained"), 0
    assert cfg.gan.start_at_linear
    untrained = train_gan(cfg, cache, runtime)
    assert untrained.checkpoint is None and untrained.training["steps"] == 0
    torch.testing.assert_close(untrained.linear_weights, fitted, atol=1e-6, rtol=0)
    val = next(iter(cache.datamodule.val_dataloader()))
    with torch.no_grad():
        generated = untrained.module(val["image"].float(), val["cgma"].float())
    torch.testing.assert_close(generated, linear_baseline.predict(fitted, val["cgma"].float()), atol=1e-5, rtol=0)


class TopLeftClassifier(torch.nn.Module):
    """Class 1's logit is 8 x the mean of the image's top-left quadrant - 4; class 0's is 0: the
    decision depends on that region only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        one = 8 * x[:, :, : x.shape[-2] // 2, : x.shape[-1] // 2].mean((1, 2, 3)) - 4
        return torch.stack([torch.zeros_like(one), one], 1)


def test_the_faithfulness_objective_moves_the_generator_to_a_small_map_that_keeps_the_class():
    """Trained on the faithfulness objective alone (no L1, no D), a generator that starts at a flat
    0.5 map (class 1 at p = 0.5 on the masked input) learns to keep the top-left region, on which the
    classifier decides, and to drop the rest (the area penalty): p rises, the map's area falls."""
    from cgmagan.metrics.keep import keep_terms

    torch.manual_seed(0)
    s = 8
    image = torch.full((4, 3, s, s), 0.2)
    image[:, :, : s // 2, : s // 2] = 1.0  # the object, where the classifier looks
    batch = {"image": image, "cgma": torch.rand(4, 2, s, s), "target": torch.zeros(4, s, s),
             "pred": torch.ones(4, dtype=torch.long), "inputs_by_combination": {0: (torch.arange(4), image[:, :1])}}  # fmt: skip
    generator = LSFTGenerator(2, nf=8, cond_nf=4, cond_hidden=8, cgma_skip=True, linear_output=True)
    generator.head.start_at(torch.tensor([0.0, 0.0, 0.5]))
    adam = partial(torch.optim.Adam, lr=3e-3, betas=(0.5, 0.999))
    gan = CGMAGAN(generator, PatchDiscriminator(3, ndf=8, n_layers=2), adam, adam, lambda_l1=0.0, lambda_adv=0.0,
                  faithfulness={"weight": 1.0, "area": 1.0, "smoothness": 0.0})  # fmt: skip
    classifier = TopLeftClassifier()
    gan.attach_classifiers([classifier])

    def state() -> tuple[float, float, float]:
        with torch.no_grad():
            maps = gan(batch["image"], batch["cgma"])[:, None]
            p = classifier(image[:, :1] * maps).softmax(1)[:, 1].mean()
            return float(p), float(maps[..., : s // 2, : s // 2].mean()), float(maps.mean())

    p0, inside0, area0 = state()
    assert (p0, inside0, area0) == (pytest.approx(0.5), pytest.approx(0.5), pytest.approx(0.5))
    loss0 = keep_terms(gan(batch["image"], batch["cgma"])[:, None], batch["inputs_by_combination"], batch["pred"], [classifier])
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(gan, train_dataloaders=DataLoader([batch] * 150, batch_size=None))
    p, inside, area = state()
    assert p > 0.85 and inside > 0.75  # the region the decision depends on is kept ...
    assert area < 0.4  # ... and the map shrank elsewhere: (area - inside / 4) / (3 / 4) is the rest's mean
    assert (area - inside / 4) / 0.75 < 0.25
    loss = keep_terms(gan(batch["image"], batch["cgma"])[:, None], batch["inputs_by_combination"], batch["pred"], [classifier])
    assert loss.total(1.0, 0.0) < loss0.total(1.0, 0.0) - 0.3


def test_a_faithfulness_trained_gan_reads_each_rows_classifier_input_and_stops_on_its_faithfulness(tmp_path):
    """With the faithfulness objective alone, the loaders serve every cache row's own classifier
    input (the image the cache holds at the map size is that input, downsampled), its explained
    class and combination; the run is judged on val/faithfulness, not on agreement with Grad-CAM."""
    import torch.nn.functional as F
    from omegaconf import open_dict

    from cgmagan.config import resolve_paths
    from cgmagan.data.cgma_datamodule import to_rgb
    from cgmagan.runtime import Runtime
    from cgmagan.stages.cgma import build_cgma_cache
    from cgmagan.stages.classifier import train_classifiers
    from cgmagan.stages.gan import train_gan
    from tests.conftest import TINY, compose_config

    cfg = compose_config(tmp_path, [*TINY, "combinations.unseen=[]", "gan.faithfulness.weight=1",
                                    "gan.module.lambda_l1=0", "gan.lambda_adv=0", "gan.patience=null"])  # fmt: skip
    resolve_paths(cfg)
    runtime = Runtime.from_config(cfg)
    cache = build_cgma_cache(cfg, train_classifiers(cfg, runtime), runtime)
    t = train_gan(cfg, cache, runtime).training
    assert t["monitor"] == "val/faithfulness" and t["best_score"] == pytest.approx(t["history"][0]["val/faithfulness"])
    assert {"val/keep", "val/area", "val/l1"} <= set(t["history"][0])

    dm = cache.datamodule
    assert not dm.serve_inputs  # only while the faithful GAN trains
    dm.serve_inputs = True
    pooled = dm._pooled("train")
    names = dm.train_names
    for row in (0, len(pooled.datasets[0]) - 1, len(pooled) - 1):
        item = pooled[row]
        combo = int(item["combo"])
        assert combo == (0 if row < len(pooled.datasets[0]) else 1)
        expected = F.interpolate(to_rgb(item["input"][None]), size=int(cfg.gan.map_size), mode="bilinear",
                                 align_corners=False).clamp(0, 1)[0]  # fmt: skip
        torch.testing.assert_close(item["image"].float(), expected, atol=2e-3, rtol=0)
        local = row - (len(pooled.datasets[0]) if combo else 0)
        source = dm.sources[names[combo]].data.dataset("train")
        assert int(item["pred"]) == int(cache.classifiers.train[combo].module.net(source[int(dm.indices(names[combo], "train")[local])][0][None]).argmax())

    # the learning curve's reference line: linear_cgma's faithfulness is what validation logs for a
    # generator that draws linear_cgma's maps (an untrained one, started at the baseline), on every
    # validation batch (limit_val_batches lifted: the reference is the whole split's), a last smaller one weighing less
    dm.batch_size = 40  # 96 validation rows: 40, 40, 16
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.gan.max_epochs, cfg.trainer.limit_val_batches = str(tmp_path / "untrained"), 0, None
    untrained = train_gan(cfg, cache, runtime)
    reference = untrained.training["linear_cgma"]
    assert reference["val/faithfulness"] == pytest.approx(t["linear_cgma"]["val/faithfulness"], abs=1e-6)
    dm.serve_inputs = True
    logged = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False).validate(untrained.module, datamodule=dm, verbose=False)[0]  # fmt: skip
    for score in ("val/keep", "val/area", "val/faithfulness", "val/objective", "val/l1"):
        assert reference[score] == pytest.approx(logged[score], abs=1e-5), score


class ScriptedScore(pl.LightningModule):
    """Logs a given sequence of validation scores, one per validation; SGD on a single weight, with
    pix2pix's linear decay, so the cuts' effect on the rates can be read off the optimizer."""

    def __init__(self, scores: list[float]):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.scores = scores

    def training_step(self, batch, _idx):
        return (self.w - batch).pow(2).mean()

    def validation_step(self, batch, _idx):
        self.log("val/l1", self.scores[self.trainer.current_epoch])

    def configure_optimizers(self):
        from cgmagan.models.gan_module import linear_decay

        sgd = torch.optim.SGD([self.w], lr=1.0)
        return [sgd], [{"scheduler": linear_decay(sgd, total_steps=100, decay_start=1.0), "interval": "step"}]


def test_a_plateau_cuts_the_learning_rates_before_the_last_one_stops_training():
    """patience 2, 2 cuts of x0.5: improvements reset the wait; each plateau before the last halves
    the rate (the schedule's base too, so its multipliers apply to the cut rate); the third stops."""
    from cgmagan.callbacks import AnnealingEarlyStopping

    # epochs: 0 best, 1-2 plateau -> cut, 3 improves, 4-5 plateau -> cut, 6-7 plateau -> stop (8, 9 never run)
    scores = [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.1, 0.1]
    stop = AnnealingEarlyStopping(monitor="val/l1", patience=2, factor=0.5, cuts=2)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=len(scores), logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[stop])  # fmt: skip
    data = DataLoader(torch.ones(2, 1), batch_size=1)
    trainer.fit(ScriptedScore(scores), train_dataloaders=data, val_dataloaders=data)
    assert trainer.current_epoch == 8 and stop.cut_steps == [6, 12]  # 2 batches an epoch
    assert trainer.lr_scheduler_configs[0].scheduler.base_lrs == [0.25]
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.25)  # constant schedule: 1.0 x 0.5 x 0.5
    assert stop.state_dict()["cut_steps"] == [6, 12]
    with pytest.raises(ValueError, match="cut factor"):
        AnnealingEarlyStopping(monitor="val/l1", factor=1.5)


def test_the_validation_grid_is_drawn_once_an_epoch_from_its_last_validation_and_where_training_stops(tmp_path, monkeypatch):
    """Two validations an epoch (val_check_interval 2 of 4 batches), two epochs, then a third cut short by
    max_steps: one figure per epoch, each showing the maps of that epoch's last validation."""
    from cgmagan import callbacks

    drawn = []
    real = callbacks.overlay_grid

    def recording_overlay_grid(image, columns, title):
        drawn.append((title, columns["generated"].clone()))
        return real(image, columns, title=title)

    monkeypatch.setattr(callbacks, "overlay_grid", recording_overlay_grid)
    torch.manual_seed(0)
    gan = gan_of("lsft")
    seen = []  # the generated maps of each validation's first batch, in order

    class RecordValidation(pl.Callback):
        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            seen.append(outputs["generated"][:2].clone())

    record = RecordValidation()
    loader = DataLoader([fixed_batch()] * 4, batch_size=None)
    grid = callbacks.ValidationGrid(str(tmp_path), rows=2)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=3, max_steps=2 * 10, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, val_check_interval=2,
                         callbacks=[record, grid])  # fmt: skip
    trainer.fit(gan, train_dataloaders=loader, val_dataloaders=DataLoader([fixed_batch()], batch_size=None))
    # 10 batches (two optimizer steps each): validations after batches 2, 4 | 6, 8 | 10, where max_steps ends the fit
    assert len(seen) == 5 and not torch.allclose(seen[0], seen[1])
    assert [title for title, _ in drawn] == [f"validation, epoch {e}" for e in (0, 1, 2)]
    for (_, maps), last in zip(drawn, (seen[1], seen[3], seen[4])):
        torch.testing.assert_close(maps, last)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [f"gan_val_epoch{e:03d}.png" for e in (0, 1, 2)]
