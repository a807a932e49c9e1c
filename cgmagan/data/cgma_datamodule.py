"""Stage cgma: precompute CGMAs and targets for every combination, cache them, serve them."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset, default_collate
from tqdm.auto import tqdm

from cgmagan.cam import cgma, cgma_settings, is_zero_map, multilayer_gradcam, penultimate_position, select_layers
from cgmagan.data.base import ClassificationDataModule, EpochShuffle, loader_workers, processes, stratified_subset
from cgmagan.data.cgma_store import CGMAStore, ShardedArrays
from cgmagan.errors import ConfigError, NumericalError
from cgmagan.utils import digest, locked, per_process_batch

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def float32(device: torch.device):
    """A region computed in float32 whatever the training precision: a bf16-mixed run's autocast
    must not reach the cache. Devices without autocast (none to switch off) get a plain region."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


@dataclass
class CGMASource:
    """One combination to explain: its classifier (eval mode), its data, and the classifier's
    module name whose Grad-CAM is the target (None: the last conv of the main path)."""

    name: str
    classifier: nn.Module
    data: ClassificationDataModule
    classifier_sha256: str
    target_layer: str | None = None


def check_layers(name: str, num_layers: int, cfg) -> None:
    """Refuse a classifier with too few layers for ``cgma.k`` CGMAs: repeated positions would cost
    memory and time for duplicated maps."""
    averaged = num_layers - bool(cfg.exclude_target_layer)
    if num_layers < 2 or int(cfg.k) > averaged:
        raise ConfigError(
            f"cgma.k={cfg.k} but {name} has {averaged} conv layers to average"
            f"{' (the target excluded)' if cfg.exclude_target_layer else ''}: set cgma.k to {max(1, averaged)} or less"
            f"{'' if num_layers >= 2 else ', and use a classifier with at least 2 conv layers'}"
        )


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]


class ShardComputer:
    """Computes one shard's arrays on ``device``: one forward and one backward pass per batch."""

    def __init__(self, source: CGMASource, split: str, indices: np.ndarray, cfg, device: torch.device):
        self.device = device
        self.name, self.split = source.name, split
        self.model = source.classifier.to(device)
        self.dataset = source.data.dataset(split)
        self.indices = indices  # cache row r holds dataset item indices[r]
        self.cfg = cfg
        probe = self.dataset[int(indices[0])][0].unsqueeze(0).to(device)
        self.layers = select_layers(self.model, probe, target=source.target_layer)
        self.penultimate = penultimate_position([name for name, _ in self.layers])
        check_layers(source.name, len(self.layers), cfg)

    def __call__(self, rows: range) -> tuple[dict[str, np.ndarray], dict]:
        """The shard's arrays, and what the manifest needs to know of them without rereading."""
        subset = Subset(self.dataset, [int(self.indices[r]) for r in rows])
        loader = DataLoader(subset, batch_size=self.cfg.batch_size, shuffle=False, pin_memory=self.device.type == "cuda",
                            num_workers=loader_workers(self.cfg.get("num_workers"), self.device))  # fmt: skip
        out: dict[str, list[np.ndarray]] = {}
        size = self.cfg.map_size
        zero = done = 0
        for batch in loader:
            x, y = batch[0].to(self.device, non_blocking=True), batch[1].to(self.device)
            with float32(self.device):
                cams, logits = multilayer_gradcam(self.model, x, self.layers, size=size)
            self._check_finite(cams, logits, first_row=rows.start + done)
            probs = logits.softmax(1)
            arrays = {
                "image": F.interpolate(to_rgb(x), size=size, mode="bilinear", align_corners=False).clamp(0, 1),
                "cgma": cgma(cams, **cgma_settings(self.cfg)),
                "target": cams[:, -1],
                "penultimate": cams[:, self.penultimate],
                "label": y,
                "pred": logits.argmax(1),
                "prob": probs.max(1).values,
            }
            if len(batch) > 2:
                mask = F.interpolate(batch[2][:, None].to(self.device).float(), size=size, mode="nearest")[:, 0]
                arrays["mask"] = mask.to(torch.uint8)
            for name, t in arrays.items():
                t = t.detach()
                if t.is_floating_point() and name != "prob":
                    t = t.half()
                out.setdefault(name, []).append(t.cpu().numpy())
            zero += int(is_zero_map(arrays["target"]).sum())
            done += len(x)
        info = {"layers": [n for n, _ in self.layers], "zero_targets": zero}
        return {n: np.concatenate(v) for n, v in out.items()}, info


    def _check_finite(self, cams: torch.Tensor, logits: torch.Tensor, first_row: int) -> None:
        """NaN or Inf in a Grad-CAM or a logit stops the precompute before the shard is written."""
        bad_image = ~(torch.isfinite(cams).flatten(2).all(2).all(1) & torch.isfinite(logits).all(1))  # [B]
        if not bad_image.any():
            return
        first = int(bad_image.nonzero()[0])
        bad_layers = [name for (name, _), ok in zip(self.layers, torch.isfinite(cams[first]).flatten(1).all(1)) if not ok]
        row = first_row + first
        raise NumericalError(
            f"{self.name} {self.split}: Grad-CAM is not finite for {int(bad_image.sum())} image(s) of this batch, first "
            f"cache row {row} (dataset item {int(self.indices[row])}), at layers {bad_layers or 'none (the logits)'}. "
            "The classifier's weights or that image hold NaN/Inf: check the image, or delete the classifier's cache "
            "folder (<paths.cache_dir>/classifiers) to retrain it. Nothing of this shard was written."
        )


class CGMADataset(Dataset):
    """Items ``{image, cgma, target}`` from one memory-mapped cache, as stored: float16.

    Half the bytes to copy, collate and send to the device, and no float32 conversion on the CPU
    (numpy's is ~7x slower than the read itself); :class:`CGMAGAN` casts batches on the device.

    With ``source`` (the combination's dataset split) and ``rows`` (the dataset item of each cache
    row), items also hold what the faithfulness objective needs: ``input``, the classifier's own
    input at its own size (the cache keeps the image at the map size only), ``pred``, the explained
    class, and ``combo``, the index of the combination's classifier.
    """

    FIELDS = ("image", "cgma", "target")

    def __init__(self, arrays: dict[str, ShardedArrays], source: Dataset | None = None, rows: np.ndarray | None = None,
                 combo: int = 0):  # fmt: skip
        self.arrays = {n: arrays[n] for n in (*self.FIELDS, *(("pred",) if source is not None else ()))}
        self.source, self.rows, self.combo = source, rows, combo

    def __len__(self) -> int:
        return len(self.arrays["target"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {n: torch.from_numpy(np.array(a[i])) for n, a in self.arrays.items()}
        if self.source is not None:
            item["input"] = self.source[int(self.rows[i])][0]
            item["combo"] = torch.tensor(self.combo)
        return item


class CGMADataModule(pl.LightningDataModule):
    """``prepare_data`` precomputes (once, under a file lock); ``setup`` reads the cache. Under
    DDP, ``setup`` precomputes instead: rank r takes shards r, r + world, ... and rank 0 verifies
    them and writes the manifests, so the bytes equal a single-process run. The attached trainer
    says which rank this is and on which device to compute (its strategy's root device).

    Training and validation batches pool the train/val splits of the training combinations;
    :meth:`arrays` gives any combination's split for evaluation.
    """

    def __init__(self, sources: list[CGMASource], train_names: list[str], cgma_cfg, cache_dir: str,
                 batch_size: int = 32, num_workers: int = 0, seed: int = 0, subset_seed: int | None = None):  # fmt: skip
        super().__init__()
        self.sources = {s.name: s for s in sources}
        self.train_names = list(train_names)
        self.cfg = cgma_cfg
        self.cache_dir = Path(cache_dir)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed  # the GAN's shuffles
        self.subset_seed = seed if subset_seed is None else subset_seed  # which images a cache holds: the classifier's
        self.serve_inputs = False  # batches with each row's classifier input, class and combination (the faithfulness objective)
        self.manifests: dict[tuple[str, str], dict] = {}
        self._indices: dict[tuple[str, str], np.ndarray] = {}

    @property
    def complete(self) -> bool:
        return len(self.manifests) == len(self.sources) * len(SPLITS)

    def indices(self, name: str, split: str) -> np.ndarray:
        """The dataset items that the cache of ``split`` holds, in cache order: all of them, or a
        seeded stratified sample of ``cgma.max_per_split``."""
        if (name, split) not in self._indices:
            data = self.sources[name].data
            limit = self.cfg.max_per_split or len(data.dataset(split))
            self._indices[(name, split)] = stratified_subset(data.labels(split), int(limit), self.subset_seed)
        return self._indices[(name, split)]

    def store(self, name: str, split: str) -> CGMAStore:
        source, rows = self.sources[name], self.indices(name, split)
        settings = {**cgma_settings(self.cfg), "map_size": self.cfg.map_size}
        key = digest({"classifier": source.classifier_sha256, "data": source.data.fingerprint(), "split": split,
                      "target_layer": source.target_layer,
                      "rows": hashlib.sha256(rows.astype(np.int64).tobytes()).hexdigest(), "cgma": settings})  # fmt: skip
        folder = self.cache_dir / "cgma" / f"{name.replace('/', '-')}-{split}-{key}"
        return CGMAStore(folder, key, len(rows), int(self.cfg.shard_size), verify=self.cfg.verify)

    @property
    def device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def _fill(self, name: str, split: str, store: CGMAStore, todo: list[int]) -> None:
        """Compute and write the shards ``todo`` (found missing or damaged by the caller)."""
        if not todo:
            return
        rank, world = processes(self.trainer)
        log.info("CGMA %s %s: computing %d of %d shards (rank %d of %d)", name, split, len(todo), store.num_shards,
                 rank, world)  # fmt: skip
        computer = ShardComputer(self.sources[name], split, self.indices(name, split), self.cfg, self.device)
        with tqdm(total=sum(len(store.shard_range(i)) for i in todo), desc=f"CGMA {name} {split}", unit="img",
                  leave=False) as bar:  # fmt: skip
            store.fill(computer, todo, progress=bar.update)

    def _finalize(self, name: str, split: str, store: CGMAStore) -> dict:
        infos = [s["info"] for s in store.shard_infos()]
        layers = infos[0]["layers"]
        if any(i["layers"] != layers for i in infos):
            raise RuntimeError(f"CGMA cache {store.root}: shards explain different layers; delete the folder and rerun")
        zero = sum(i["zero_targets"] for i in infos)
        manifest = store.finalize(
            {"combination": name, "split": split, "zero_targets": zero, "num_layers": len(layers), "layers": layers}
        )
        log.info("CGMA cache %s %s: %d maps, %d all-zero targets, %s", name, split, store.count, zero, store.root)
        return manifest

    def _ensure(self, name: str, split: str) -> dict:
        """Complete, verified cache for one combination and split (single process, file-locked)."""
        store = self.store(name, split)
        with locked(store.root):
            missing, manifest = store.missing_shards(), store.manifest()
            if manifest is not None and not missing:
                return manifest
            store.remove_partial_shards()
            self._fill(name, split, store, missing)
            return self._finalize(name, split, store)

    def prepare_data(self) -> None:
        if processes(self.trainer)[1] > 1 or self.complete:
            return  # under DDP every rank computes its share in setup()
        for name in self.sources:
            for split in SPLITS:
                self.manifests[(name, split)] = self._ensure(name, split)
            self.sources[name].data.release()  # one combination's images in memory at a time

    def setup(self, stage: str | None = None) -> None:
        rank, world = processes(self.trainer)
        if world > 1 and not self.manifests:
            # rank r computes shards r, r + world, ...; rank 0 verifies them all and writes manifests
            pending = [(n, s) for n in self.sources for s in SPLITS if self.store(n, s).manifest() is None]
            for name in self.sources:
                for split in SPLITS:
                    if (name, split) in pending:
                        store = self.store(name, split)
                        self._fill(name, split, store, store.missing_shards(range(rank, store.num_shards, world)))
                self.sources[name].data.release()
            self.trainer.strategy.barrier("cgma-shards")
            if rank == 0:
                for name, split in pending:
                    self._finalize(name, split, self.store(name, split))
            self.trainer.strategy.barrier("cgma-manifests")
        for name in self.sources:
            for split in SPLITS:
                if (name, split) not in self.manifests:
                    self.manifests[(name, split)] = self._ensure(name, split)

    def zero_target_share(self, name: str) -> float:
        """Share of all-zero targets over every split of a combination."""
        zero = sum(self.manifests[(name, s)]["zero_targets"] for s in SPLITS)
        return zero / max(1, sum(self.manifests[(name, s)]["count"] for s in SPLITS))

    def mean_train_target(self) -> torch.Tensor:
        """The mean target over the GAN's training data (every training combination pooled) [S, S]."""
        total, count = None, 0
        for name in self.train_names:
            for part in self.arrays(name, "train")["target"].parts:
                s = torch.from_numpy(part.astype(np.float32)).sum(0)
                total = s if total is None else total + s
                count += len(part)
        return total / max(1, count)

    def arrays(self, name: str, split: str) -> dict[str, ShardedArrays]:
        return self.store(name, split).load()

    def train_batches(self, world_size: int = 1) -> int:
        """Each rank's training batches an epoch, from the manifests' counts (no shard is opened):
        a distributed sampler gives every rank ceil(rows / world) of the pooled rows."""
        rows = sum(self.manifests[(name, "train")]["count"] for name in self.train_names)
        per_rank = -(-rows // world_size)  # ceiling divisions
        return -(-per_rank // per_process_batch(self.batch_size, world_size, "gan.batch_size"))

    def _pooled(self, split: str) -> ConcatDataset:
        if not self.serve_inputs:
            return ConcatDataset([CGMADataset(self.arrays(n, split)) for n in self.train_names])
        return ConcatDataset([CGMADataset(self.arrays(n, split), self.sources[n].data.dataset(split),
                                          self.indices(n, split), combo)
                              for combo, n in enumerate(self.train_names)])  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        pooled = self._pooled("train")
        batch = per_process_batch(self.batch_size, processes(self.trainer)[1], "gan.batch_size")  # all processes' batch together
        return DataLoader(pooled, batch_size=batch, sampler=EpochShuffle(pooled, self.seed),
                          num_workers=self.num_workers, collate_fn=collate_rows)  # fmt: skip

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._pooled("val"), batch_size=self.batch_size, num_workers=self.num_workers,
                          collate_fn=collate_rows)  # fmt: skip


def collate_rows(items: list[dict[str, torch.Tensor]]) -> dict:
    """Torch's collation; the classifier inputs that the faithfulness objective reads (of several
    shapes when the combinations' classifiers differ) go to ``inputs_by_combination``."""
    inputs = [item.pop("input") for item in items] if "input" in items[0] else None
    batch = default_collate(items)
    if inputs is not None:
        batch["inputs_by_combination"] = group_by_combination(inputs, batch["combo"].tolist())
    return batch


def group_by_combination(inputs: list[torch.Tensor], combos: list[int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Combination c -> (its rows of the batch [n], their inputs stacked [n, C, H, W]): grouped once
    in the loader, so the training step indexes without asking the device where each row is."""
    groups = {}
    for c in sorted(set(combos)):
        rows = [i for i, k in enumerate(combos) if k == c]
        groups[c] = (torch.tensor(rows), torch.stack([inputs[i] for i in rows]))
    return groups
