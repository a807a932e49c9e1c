"""On-disk CGMA cache: fixed-size shards of float16 arrays, memory-mapped on read.

Layout of one cache (one dataset split explained by one classifier checkpoint)::

    <cache_dir>/cgma/<dataset>-<backbone>-<split>-<key>/
        manifest.json          written last: key, versions, count, fields, per-shard checksums
        shard-00000/           renamed into place only when complete
            meta.json          count, sha256 per array file, the computer's info (layers, zero targets)
            .checked.json      inode, size and times of the files at their last full checksum pass
            image.npy cgma.npy target.npy penultimate.npy label.npy pred.npy prob.npy [mask.npy]

A killed run leaves only complete shards behind and resumes from them; a shard whose bytes no
longer match its checksums is reported and recomputed.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from cgmagan.utils import atomic_dir, file_sha256, write_json_atomic

log = logging.getLogger(__name__)

FORMAT_VERSION = 3  # 2: shard meta carries the computer's info; 3: penultimate Grad-CAM from the main path

VERIFY_MODES = ("stat", "full")
CHECKED = ".checked.json"  # file-system identity of a shard's files at their last full checksum pass


def file_identity(path: Path) -> list[int]:
    """Changes whenever the file is written, replaced or truncated (ctime cannot be set back)."""
    st = path.stat()
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class CGMAStore:
    """One cache. ``verify="full"`` re-hashes every shard whenever it is checked; ``"stat"`` re-hashes
    only the shards whose files changed on disk since their last full pass (written, replaced,
    truncated, copied), so a sweep of many jobs over a large cache does not re-read it each time."""

    def __init__(self, root: Path, key: str, count: int, shard_size: int, verify: str = "stat"):
        self.root, self.key, self.count, self.shard_size = Path(root), key, count, shard_size
        self.verify = verify

    @property
    def num_shards(self) -> int:
        return max(1, -(-self.count // self.shard_size))

    def shard_range(self, i: int) -> range:
        return range(i * self.shard_size, min(self.count, (i + 1) * self.shard_size))

    def shard_dir(self, i: int) -> Path:
        return self.root / f"shard-{i:05d}"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @staticmethod
    def _record_checked(folder: Path, files: Iterable[str]) -> None:
        write_json_atomic(folder / CHECKED, {name: file_identity(folder / name) for name in files})

    def _unchanged_since_checked(self, folder: Path, files: dict[str, str]) -> bool:
        if self.verify != "stat" or not (folder / CHECKED).is_file():
            return False
        checked = json.loads((folder / CHECKED).read_text())
        return checked.keys() == files.keys() and all(file_identity(folder / n) == checked[n] for n in files)

    def _checksums_match(self, folder: Path, files: dict[str, str]) -> bool:
        if not all(file_sha256(folder / name) == sha for name, sha in files.items()):
            return False
        self._record_checked(folder, files)
        return True

    def _shard_ok(self, i: int) -> bool:
        """True when shard ``i`` is complete and every file matches its recorded checksum."""
        folder = self.shard_dir(i)
        try:
            meta = json.loads((folder / "meta.json").read_text())
            files = meta["sha256"]
            ok = meta["format"] == FORMAT_VERSION and meta["count"] == len(self.shard_range(i))
            ok = ok and (self._unchanged_since_checked(folder, files) or self._checksums_match(folder, files))
        except (OSError, ValueError, KeyError):
            ok = False
        if not ok:
            log.warning("CGMA cache shard %s is damaged or stale (checksum mismatch); recomputing it", folder)
            shutil.rmtree(folder, ignore_errors=True)
        return ok

    def remove_partial_shards(self) -> int:
        """Delete the temporary folders of shards whose writer was killed; only call under the store's lock."""
        partial = list(self.root.glob(".shard-*.tmp"))
        for folder in partial:
            shutil.rmtree(folder, ignore_errors=True)
        if partial:
            log.info("CGMA cache %s: removed %d partial shard(s) left by an interrupted run", self.root, len(partial))
        return len(partial)

    def missing_shards(self, shards: Iterable[int] | None = None) -> list[int]:
        shards = range(self.num_shards) if shards is None else shards
        return [i for i in shards if not (self.shard_dir(i).is_dir() and self._shard_ok(i))]

    def write_shard(self, i: int, arrays: dict[str, np.ndarray], info: dict | None = None) -> None:
        """Write shard ``i`` under a temporary name, then rename it into place; ``info`` goes to its meta."""
        with atomic_dir(self.shard_dir(i)) as tmp:
            for name, arr in arrays.items():
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr))
            sha = {f"{n}.npy": file_sha256(tmp / f"{n}.npy") for n in arrays}
            meta = {"format": FORMAT_VERSION, "count": len(self.shard_range(i)), "sha256": sha, "info": info or {}}
            write_json_atomic(tmp / "meta.json", meta)
            self._record_checked(tmp, sha)  # renaming the folder keeps the files' identity

    def fill(
        self,
        compute: Callable[[range], tuple[dict[str, np.ndarray], dict]],
        shards: Iterable[int],
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Compute and write ``shards`` (as found by :meth:`missing_shards`), one at a time: memory
        holds one shard's arrays, whatever the size of the split."""
        for i in shards:
            self.write_shard(i, *compute(self.shard_range(i)))
            if progress is not None:
                progress(len(self.shard_range(i)))

    def shard_infos(self) -> list[dict]:
        return [json.loads((self.shard_dir(i) / "meta.json").read_text()) for i in range(self.num_shards)]

    def finalize(self, info: dict) -> dict:
        """Write the manifest once every shard is present. Verifying them is the caller's job, done once:
        shards found intact by :meth:`missing_shards`, the others just written."""
        absent = [i for i in range(self.num_shards) if not (self.shard_dir(i) / "meta.json").is_file()]
        if absent:
            raise RuntimeError(f"CGMA cache {self.root} is missing shards {absent}")
        shards = self.shard_infos()
        manifest = {
            "format": FORMAT_VERSION,
            "key": self.key,
            "count": self.count,
            "shard_size": self.shard_size,
            "shards": [s["sha256"] for s in shards],
            "versions": {"torch": torch.__version__, "numpy": np.__version__},
            **info,
        }
        write_json_atomic(self.manifest_path, manifest)
        return manifest

    def manifest(self) -> dict | None:
        """The manifest when the cache is complete and matches this key, else None."""
        if not self.manifest_path.is_file():
            return None
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except ValueError:
            return None
        if manifest.get("format") != FORMAT_VERSION or manifest.get("key") != self.key:
            return None
        if manifest.get("count") != self.count or manifest.get("shards") != self._shard_checksums():
            log.warning("CGMA cache %s: its manifest disagrees with its shards (another run's, or edited); "
                        "writing it again from the shards", self.root)  # fmt: skip
            return None
        return manifest

    def _shard_checksums(self) -> list[dict | None]:
        """Each shard's recorded file checksums, as a manifest lists them (None: no readable meta)."""
        sums = []
        for i in range(self.num_shards):
            try:
                sums.append(json.loads((self.shard_dir(i) / "meta.json").read_text())["sha256"])
            except (OSError, ValueError, KeyError):
                sums.append(None)
        return sums

    def load(self, fields: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Memory-mapped arrays of every shard, per field, joined lazily by :class:`ShardedArrays`."""
        names = fields or [p.stem for p in sorted(self.shard_dir(0).glob("*.npy"))]
        return {
            n: ShardedArrays([np.load(self.shard_dir(i) / f"{n}.npy", mmap_mode="r") for i in range(self.num_shards)])
            for n in names
        }


class ShardedArrays:
    """Row-indexable view over per-shard memory maps of equal row size (but the last)."""

    def __init__(self, parts: list[np.ndarray]):
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self),) + tuple(self.parts[0].shape[1:])

    def __getitem__(self, i: int) -> np.ndarray:
        s = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.parts[s][i - self.offsets[s]]

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as one in-memory array."""
        out = []
        for s, part in enumerate(self.parts):
            lo, hi = max(start, self.offsets[s]), min(stop, self.offsets[s + 1])
            if lo < hi:
                out.append(np.asarray(part[lo - self.offsets[s] : hi - self.offsets[s]]))
        return np.concatenate(out) if out else np.empty((0,) + self.shape[1:], self.parts[0].dtype)
