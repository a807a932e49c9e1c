"""Stage gan: the conditional GAN trained on the training combinations' cached CGMAs (or loaded
from ``gan.checkpoint``), on the trainer's device and strategy; its best checkpoint is kept."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.utils import instantiate
from lightning_fabric.utilities.apply_func import move_data_to_device
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import EarlyStopping, WeightAveraging
from torch.optim.swa_utils import get_ema_multi_avg_fn

from cgmagan import linear_baseline
from cgmagan.callbacks import AnnealingEarlyStopping, LearningCurve
from cgmagan.cam import cgma_settings
from cgmagan.errors import UserError
from cgmagan.models.gan_module import CGMAGAN, as_float32
from cgmagan.runtime import Runtime
from cgmagan.stages.cgma import CGMACache
from cgmagan.utils import digest, epochs_text, inert, instantiate_list, live, seed_stage, training_batches

log = logging.getLogger(__name__)


@dataclass
class TrainedGAN:
    """The stage's result: the GAN in its best state and the checkpoint it came from (None when
    the run kept no checkpoint)."""

    module: CGMAGAN
    checkpoint: Path | None
    cache: CGMACache
    training: dict | None = None  # how the training went (:func:`training_record`); None when loaded
    linear_weights: torch.Tensor | None = None  # the linear CGMA baseline fit on the same data; None when loaded


def describe(cfg: DictConfig) -> dict:
    """What a GAN checkpoint needs to be rebuilt and used alone: its networks' configs (made inert),
    the map size and the CGMA settings its inputs were made with."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    gan = resolved["gan"]
    return {"generator": inert(gan["module"]["generator"]), "discriminator": inert(gan["module"]["discriminator"]),
            "map_size": int(gan["map_size"]), "cgma": cgma_settings(resolved["cgma"]),
            "conditioning": resolved["conditioning"]["name"], "train_combinations": list(resolved["combinations"]["train"]),
            "training_key": training_key(cfg)}  # fmt: skip


def training_key(cfg: DictConfig) -> str:
    """What a GAN's training depends on, its length aside: a killed run, or one given more
    epochs, may continue from a last.ckpt with the same key."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    # when it stops (the cap, the patience) and how it is fed are not what it learns
    gan = {k: v for k, v in resolved["gan"].items()
           if k not in ("max_epochs", "patience", "min_delta", "checkpoint", "trainer", "num_workers")}
    cgma = {k: v for k, v in resolved["cgma"].items() if k not in ("num_workers", "verify")}  # how, not what
    return digest({"gan": gan, "cgma": cgma, "combinations": resolved["combinations"]["train"],
                   "seed": resolved.get("seed")})  # fmt: skip


def resumable(path: Path, key: str) -> bool:
    """``path`` is a last.ckpt of a GAN trained with ``key``."""
    if not path.is_file():
        return False
    try:
        description = checkpoint_description(path)
    except UserError as err:  # unreadable (killed while writing it, say): train from the start
        log.warning("GAN: not resuming from %s: %s", path, err)
        return False
    if description.get("training_key") != key:
        log.warning("GAN: not resuming from %s: it was trained with other settings", path)
        return False
    return True


def checkpoint_description(path: str | Path) -> dict:
    """The description a GAN checkpoint was saved with (see :func:`describe`)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise UserError(f"GAN checkpoint {path} does not exist") from None
    except Exception as err:  # truncated or not a checkpoint: torch raises several kinds  # noqa: BLE001
        raise UserError(f"GAN checkpoint {path} cannot be read ({type(err).__name__}: {err}); is it a .ckpt "
                        "written by this package, and complete?") from None  # fmt: skip
    description = checkpoint.get("hyper_parameters", {}).get("description")
    if not description:
        raise UserError(f"{path} is not a GAN checkpoint of this package, or predates self-describing checkpoints "
                        "(retrain the GAN, or evaluate it with the run's config: python run.py gan.checkpoint=...)")  # fmt: skip
    return description


def load_gan(path: str | Path, cfg: DictConfig | None = None) -> CGMAGAN:
    """A GAN checkpoint, into the networks that ``cfg.gan.module`` describes, or (no config) that
    the checkpoint's own description names."""
    if cfg is None:
        description = checkpoint_description(path)
        networks = {k: instantiate(live(description[k])) for k in ("generator", "discriminator")}
    else:
        networks = {k: instantiate(cfg.gan.module[k]) for k in ("generator", "discriminator")}
    try:
        return CGMAGAN.load_from_checkpoint(path, map_location="cpu", weights_only=False, **networks)
    except FileNotFoundError:
        raise UserError(f"GAN checkpoint {path} does not exist") from None
    except RuntimeError as err:  # load_state_dict: missing keys or other shapes
        what = ("this run's generator and discriminator (conditioning, gan.*, cgma.k)" if cfg is not None
                else "the networks its own description names")  # fmt: skip
        raise UserError(f"GAN checkpoint {path} does not fit {what}: {str(err).splitlines()[0]}") from None


def monitored(cfg: DictConfig) -> tuple[str, str]:
    """(score, mode) that picks the best checkpoint, and that early stopping watches."""
    checkpoint = (cfg.get("callbacks") or {}).get("model_checkpoint") or {}
    return str(checkpoint.get("monitor") or cfg.gan.get("monitor") or "val/l1"), str(checkpoint.get("mode") or "min")


def gan_callbacks(cfg: DictConfig) -> list:
    """The ``callbacks`` group's; early stopping on the best checkpoint's score when ``gan.patience``
    is set, after ``gan.lr_cuts`` plateaus that each cut the learning rates by ``gan.lr_cut_factor``
    (:class:`AnnealingEarlyStopping`); an EMA of the weights when ``gan.ema_decay`` is set (:func:`weight_averaging`):
    validation, checkpoints and so the evaluated GAN then hold the averaged weights."""
    callbacks = instantiate_list(cfg.get("callbacks"), "callbacks")
    if cfg.gan.get("patience") is not None:
        score, mode = monitored(cfg)
        factor = cfg.gan.get("lr_cut_factor")  # unset: the callback's default; 0 is an error, not the default
        cut_factor = {} if factor is None else {"factor": float(factor)}
        callbacks.append(AnnealingEarlyStopping(monitor=score, mode=mode, patience=int(cfg.gan.patience),
                                                min_delta=float(cfg.gan.get("min_delta") or 0.0), check_finite=True,
                                                cuts=int(cfg.gan.get("lr_cuts") or 0), **cut_factor))  # fmt: skip
    if cfg.gan.get("ema_decay") is not None:
        callbacks.append(weight_averaging(float(cfg.gan.ema_decay)))
    return callbacks


def weight_averaging(decay: float) -> WeightAveraging:
    """An exponential moving average of the weights (``decay`` per step) that validation, checkpoints
    and the end of training use: Lightning's EMAWeightAveraging with the foreach update (one lerp per
    device and dtype) in place of its parameter-by-parameter one, ~10 % of a gan=small step on a CPU."""
    return WeightAveraging(multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def validation_interval(cfg: DictConfig, cache: CGMACache, runtime: Runtime, overrides: dict) -> int | None:
    """Training batches between validations when ``gan.val_every`` asks for more than one per epoch
    (patience then counts validations, and the best checkpoint may fall within an epoch); None
    keeps Lightning's once per epoch (an epoch of fewer batches, a debug run, an explicit setting)."""
    every = cfg.gan.get("val_every")
    trainer = {**OmegaConf.to_container(cfg.trainer, resolve=True), **overrides}
    if not every or trainer.get("fast_dev_run") or trainer.get("overfit_batches") or "val_check_interval" in trainer:
        return None
    batches = cache.datamodule.train_batches(runtime.world_size)
    limit = trainer.get("limit_train_batches")
    if limit is not None:
        batches = int(batches * limit) if isinstance(limit, float) else min(batches, int(limit))
    return int(every) if int(every) < batches else None


def faithfulness_reference(gan: CGMAGAN, weights: torch.Tensor, datamodule, runtime: Runtime,
                           linear_l1: float) -> dict[str, float]:  # fmt: skip
    """The linear baseline's val/keep, val/area and val/faithfulness on the GAN's validation batches
    (the loaders serving the classifiers' inputs), and its val/objective from ``linear_l1``, per image
    as validation averages G's: the reference line of a faithful run's learning curve and of its
    monitored score. Rank 0 scores them on its device; every rank gets them."""
    scores = None
    if runtime.is_global_zero:
        device, sums, count = runtime.root_device, {}, 0
        for batch in datamodule.val_dataloader():
            batch = as_float32(move_data_to_device(batch, device))
            maps = linear_baseline.predict(weights, batch["cgma"])[:, None]
            for name, value in gan.faithfulness_scores(maps, batch).items():
                sums[name] = sums.get(name, 0.0) + float(value) * len(maps)
            count += len(maps)
        scores = {f"val/{name}": total / max(count, 1) for name, total in sums.items()}
        scores["val/objective"] = (float(gan.hparams.lambda_l1) * linear_l1
                                   + float(gan.hparams.faithfulness["weight"]) * scores["val/faithfulness"])  # fmt: skip
    return runtime.broadcast(scores)


def training_record(trainer, cfg: DictConfig, reference: dict[str, float]) -> dict:
    """Steps and epochs trained, why training stopped (the score's plateau or the epoch cap), the
    best validation score and its epoch, each validation's scores, and the linear baseline's."""
    score, mode = monitored(cfg)
    stop = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)
    curve = next((c for c in trainer.callbacks if isinstance(c, LearningCurve)), None)
    history = list(curve.history) if curve else []
    scored = [h for h in history if score in h]
    best = (min if mode == "min" else max)(scored, key=lambda h: h[score]) if scored else None
    plateau = bool(stop and trainer.should_stop and stop.wait_count >= stop.patience)
    steps = training_batches(trainer)
    return {"steps": steps, "epochs": round(steps / max(1, trainer.num_training_batches), 2),
            "lr_cuts": list(getattr(stop, "cut_steps", [])),  # the steps after which the learning rates were cut
            "stopped_by": "plateau" if plateau else "max_epochs", "max_epochs": int(cfg.gan.max_epochs),
            "patience": cfg.gan.get("patience"), "monitor": score, "mode": mode,
            "best_epoch": best["epoch"] if best else None, "best_step": best["step"] if best else None,
            "best_score": best[score] if best else None,
            "history": history, "linear_cgma": reference}  # fmt: skip


def train_gan(cfg: DictConfig, cache: CGMACache, runtime: Runtime) -> TrainedGAN:
    """Entry point: fit the GAN (Lightning's loops, checkpointing and callbacks from config),
    continuing from the run folder's last.ckpt when one of the same training is there;
    ``gan.trainer`` holds Trainer settings for this fit only."""
    if cfg.gan.checkpoint:
        log.info("GAN: loading %s instead of training", cfg.gan.checkpoint)
        return TrainedGAN(load_gan(cfg.gan.checkpoint, cfg), Path(cfg.gan.checkpoint), cache)
    seed_stage(cfg.get("seed"), "gan")
    gan = instantiate(cfg.gan.module, description=describe(cfg))
    overrides = cfg.gan.get("trainer")
    overrides = OmegaConf.to_container(overrides, resolve=True) if overrides else {}
    every = validation_interval(cfg, cache, runtime, overrides)
    if every:
        overrides["val_check_interval"] = every
    trainer = runtime.trainer(logger=runtime.loggers or False, callbacks=gan_callbacks(cfg), **overrides)
    linear_weights = fit_linear_baseline(cache)
    if cfg.gan.get("start_at_linear"):
        gan.generator.head.start_at(linear_weights)
    reference = linear_baseline.validation_scores(linear_weights, [cache.datamodule.arrays(n, "val")
                                                                   for n in cache.datamodule.train_names])
    if gan.faithful:  # the classifiers judge the masked inputs, which the loaders then serve
        gan.attach_classifiers([c.module.net for c in cache.classifiers.train], device=runtime.root_device)
        cache.datamodule.serve_inputs = True
        reference.update(faithfulness_reference(gan, linear_weights, cache.datamodule, runtime, reference["val/l1"]))
    for callback in trainer.callbacks:
        if isinstance(callback, LearningCurve):
            callback.reference = reference
    last = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt" if trainer.checkpoint_callback else None
    resume = runtime.broadcast(bool(last) and runtime.is_global_zero and resumable(last, training_key(cfg)))
    if resume:
        log.info("GAN: resuming from %s (this run was interrupted, or is given more epochs)", last)
    try:
        trainer.fit(gan, datamodule=cache.datamodule, ckpt_path=str(last) if resume else None,
                    weights_only=False)  # our own checkpoint: it holds the hyperparameters (configs), not only tensors
    finally:
        cache.datamodule.serve_inputs = False
    training = training_record(trainer, cfg, reference)
    linear = reference.get(training["monitor"])
    log.info("GAN: %d steps (%s%s), stopped by %s; best %s %.4f at step %s (linear_cgma: %s)", training["steps"],
             epochs_text(training["epochs"]), f"; learning rates cut after steps {training['lr_cuts']}" if training["lr_cuts"] else "",
             "the score's plateau" if training["stopped_by"] == "plateau"
             else f"the epoch cap (gan.max_epochs {training['max_epochs']})", training["monitor"],
             training["best_score"] if training["best_score"] is not None else float("nan"), training["best_step"],
             "not scored on this" if linear is None else f"{linear:.4f}")  # fmt: skip
    best = getattr(trainer.checkpoint_callback, "best_model_path", "")
    if not best:
        return TrainedGAN(gan, None, cache, training, linear_weights)
    log.info("GAN: using the best checkpoint %s", best)
    return TrainedGAN(load_gan(best, cfg), Path(best), cache, training, linear_weights)


def fit_linear_baseline(cache: CGMACache) -> torch.Tensor:
    """The linear CGMA baseline's weights, fit on the GAN's training data: where the generator starts
    (``gan.start_at_linear``), its learning curve's reference line, and a method of the evaluation."""
    dm = cache.datamodule
    return linear_baseline.fit_on_cache([dm.arrays(name, "train") for name in dm.train_names])
