"""The paper preset measured: what each stage and each evaluation method costs at paper size.

    make bench          # or: python benchmarks/paper_scale.py [--device cuda] [--batch 8]

For each of the paper's backbones (ResNet50, VGG16, MobileNetV2 at 256x256, 11 classes, untrained:
the cost does not depend on the weights) a bounded number of batches of: a classifier training step
(forward, backward, SGD step), a forward pass, and the CGMA precompute (every layer's Grad-CAM from
one forward and one backward); the conv and linear layers of the sanity check's cascade and the
target layer's channels (Score-CAM runs one masked forward per channel). The paper GAN's training
step (K = 8, map 64, batch 32), LSFT and GSFT. JPEG decoding and resizing on a generated Food-11
tree at the photographs' real sizes. Then the evaluation of ResNet50's maps, per method: the map
itself, the scores every map gets (confidence drops at full, matched and top areas, agreement), and
per image in their subsets deletion / insertion, ROAD and condition importance.

Score-CAM's map is (channels + 1) forwards per image, each as costly as the forward pass measured
here: it is computed from that (marked *extrapolated*), not run (2,049 ResNet50 forwards per image
would be most of this benchmark). Peak memory is the process's resident set (reset before each
stage) on a CPU and the allocator's peak on a GPU.

Writes benchmarks/paper_scale.md and paper_scale.json (what ``python -m cgmagan.reproduce paper
--dry-run`` reads for its cost estimate).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

BACKBONES = ("resnet50", "vgg16", "mobilenet_v2")
SIZE, CLASSES, K, MAP = 256, 11, 8, 64


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: "5" resets the peak resident set (VmHWM) to the current one
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


@contextmanager
def timed(device: torch.device, out: dict):
    """``out['seconds']`` and ``out['peak_gib']`` of the block."""
    _reset_peak(device)
    _sync(device)
    start = time.perf_counter()
    yield out
    _sync(device)
    out["seconds"] = time.perf_counter() - start
    out["peak_gib"] = _peak_gib(device)


def per_image(fn, device: torch.device, images: int, repeats: int) -> dict:
    """Seconds per image of ``fn`` (which handles ``images`` images), after one warm-up call."""
    fn()
    with timed(device, {}) as row:
        for _ in range(repeats):
            fn()
    return {"s_per_image": row["seconds"] / (images * repeats), "peak_gib": row["peak_gib"]}


def backbone_costs(name: str, device: torch.device, batch: int, repeats: int) -> dict:
    from cgmagan.backbones import build_backbone
    from cgmagan.cam import multilayer_gradcam, select_layers
    from cgmagan.sanity import cascade_layers

    torch.manual_seed(0)
    model = build_backbone(name, 3, CLASSES).to(device)
    x = torch.rand(batch, 3, SIZE, SIZE, device=device)
    y = torch.randint(0, CLASSES, (batch,), device=device)
    layers = select_layers(model.eval(), x[:1])
    channels = []  # the target layer's (Score-CAM's masks)
    handle = layers[-1][1].register_forward_hook(lambda _m, _i, out: channels.append(out.shape[1]) and None)
    with torch.no_grad():
        model(x[:1])
    handle.remove()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def train_step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    @torch.no_grad()
    def forward():
        model.eval()(x)

    def precompute():
        model.eval()
        multilayer_gradcam(model, x, layers, size=MAP)

    costs = {"layers": len(layers), "cascade": len(cascade_layers(model)), "target_channels": int(channels[0])}
    for stage, fn in (("train_step", train_step), ("forward", forward), ("cgma_precompute", precompute)):
        costs[stage] = per_image(fn, device, batch, repeats)
        print(f"{name:13s} {stage:16s} {costs[stage]['s_per_image'] * 1000:9.1f} ms/image  "
              f"peak {costs[stage]['peak_gib']:.2f} GiB", flush=True)  # fmt: skip
    return costs


def gan_costs(device: torch.device, steps: int) -> dict:
    from gan_speed import composed, step_seconds
    from hydra.utils import instantiate

    out = {}
    for conditioning in ("lsft", "gsft"):
        cfg = composed("paper", conditioning)
        with timed(device, {}) as row:
            seconds = step_seconds(cfg, instantiate(cfg.conditioning.generator), device, steps=steps, warmup=1)
        out[conditioning] = {"s_per_image": seconds / int(cfg.gan.batch_size), "batch": int(cfg.gan.batch_size),
                             "peak_gib": row["peak_gib"]}  # fmt: skip
        print(f"paper GAN {conditioning.upper()} step  {seconds * 1000:9.1f} ms/batch of {cfg.gan.batch_size}", flush=True)
    return out


def decode_costs(folder: Path, images: int) -> dict:
    """Food-11 JPEGs at their real sizes, decoded and resized to 256x256 as a loader worker does."""
    from paper_trees import tree

    from cgmagan.data.kaggle import Food11DataModule

    dm = Food11DataModule(root=str(tree(folder, "food11", 0.01) / "food11"), input_size=SIZE, batch_size=8)
    dm.setup("fit")
    data = dm.dataset("train")
    n = min(images, len(data))
    data[0]
    with timed(torch.device("cpu"), {}) as row:
        for i in range(n):
            data[i]
    return {"s_per_image": row["seconds"] / n, "peak_gib": row["peak_gib"]}


def evaluation_costs(device: torch.device, batch: int, repeats: int) -> dict:
    """Per method, ResNet50's maps for ``batch`` images; the scores of one map; deletion / insertion,
    ROAD and condition importance per image of their subsets."""
    from gan_speed import composed
    from hydra.utils import instantiate

    from cgmagan.backbones import build_backbone
    from cgmagan.cam import select_layers
    from cgmagan.methods import select_methods
    from cgmagan.models.evaluation_module import ExplanationEvaluator

    torch.manual_seed(0)
    model = build_backbone("resnet50", 3, CLASSES).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    target = select_layers(model, torch.rand(1, 3, SIZE, SIZE, device=device))[-1][0]
    cfg = composed("paper", "lsft")
    gan = instantiate(cfg.gan.module, generator=instantiate(cfg.conditioning.generator)).to(device).eval()

    def evaluator(names: list[str] | None, num_cgmas: int) -> ExplanationEvaluator:
        return ExplanationEvaluator(["food11/resnet50"], [model], [target], [False], gan, torch.rand(MAP, MAP),
                                    torch.rand(K + 1), select_methods(names), num_cgmas=num_cgmas).to(device)  # fmt: skip

    g = torch.Generator().manual_seed(0)
    data = {"input": torch.rand(batch, 3, SIZE, SIZE, generator=g), "image": torch.rand(batch, 3, MAP, MAP, generator=g),
            "cgma": torch.rand(batch, K, MAP, MAP, generator=g), "other_cgma": torch.rand(batch, K, MAP, MAP, generator=g),
            "target": torch.rand(batch, MAP, MAP, generator=g), "penultimate": torch.rand(batch, MAP, MAP, generator=g),
            "pred": torch.randint(0, CLASSES, (batch,), generator=g), "index": torch.arange(batch)}  # fmt: skip
    data = {k: v.to(device) for k, v in data.items()}

    def with_subsets(auc: int, road: int) -> dict:
        flags = torch.arange(batch, device=device)
        return {**data, "in_auc": flags < auc, "in_road": flags < road}

    out: dict = {"explain": {}}
    ev = evaluator(None, 0)
    with torch.enable_grad():
        for method in ev.methods:
            if method.name == "scorecam":
                continue
            out["explain"][method.name] = per_image(lambda m=method: m.explain(ev, data, 0), device, batch, repeats)
            print(f"explain {method.name:20s} {out['explain'][method.name]['s_per_image'] * 1000:9.1f} ms/image", flush=True)
        reference = evaluator(["gradcam"], 0)
        plain = per_image(lambda: reference.test_step(with_subsets(0, 0), 0), device, batch, repeats)["s_per_image"]
        out["scores_per_map"] = {"s_per_image": plain - out["explain"]["gradcam"]["s_per_image"]}
        auc = per_image(lambda: reference.test_step(with_subsets(batch, 0), 0), device, batch, 1)
        out["deletion_insertion_per_map"] = {"s_per_image": auc["s_per_image"] - plain, "peak_gib": auc["peak_gib"]}
        road = per_image(lambda: reference.test_step(with_subsets(1, 1), 0), device, batch, 1)
        road_per_image = (road["s_per_image"] - plain) * batch - out["deletion_insertion_per_map"]["s_per_image"]
        out["road_per_map"] = {"s_per_image": road_per_image, "peak_gib": road["peak_gib"]}
        probe = evaluator(["gradcam", "gan"], K)
        maps = gan(data["image"] * 2 - 1, data["cgma"])
        rows = torch.ones(batch, dtype=torch.bool, device=device)
        out["condition_importance"] = per_image(lambda: probe._condition_importance(data, maps, rows, 0), device, batch, 1)
    for key in ("scores_per_map", "deletion_insertion_per_map", "road_per_map", "condition_importance"):
        print(f"{key:28s} {out[key]['s_per_image'] * 1000:9.1f} ms/image", flush=True)
    return out


def markdown(result: dict) -> str:
    r = result
    lines = [f"# The paper preset measured ({r['device']})", "",
             f"`python benchmarks/paper_scale.py` on {r['device']}, torch {r['torch']}, {r['date']}; images of "
             f"{SIZE}x{SIZE}, {CLASSES} classes, batch {r['batch']}. Peak: {r['peak_kind']}.", "",
             "## Stages, per backbone", "",
             "| backbone | classifier training | forward | CGMA precompute | layers | cascade | target channels |",
             "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip

    def rate(cost: dict) -> str:
        return f"{1 / cost['s_per_image']:.1f} img/s ({cost['peak_gib']:.2f} GiB)"

    for name, c in r["backbones"].items():
        lines.append(f"| {name} | {rate(c['train_step'])} | {rate(c['forward'])} | {rate(c['cgma_precompute'])} | "
                     f"{c['layers']} | {c['cascade']} | {c['target_channels']} |")  # fmt: skip
    gan = r["gan"]
    lines += ["", "| stage | images/s | peak GiB |", "|---|---:|---:|",
              f"| paper GAN training, LSFT (batch {gan['lsft']['batch']}) | {1 / gan['lsft']['s_per_image']:.1f} | {gan['lsft']['peak_gib']:.2f} |",
              f"| paper GAN training, GSFT (batch {gan['gsft']['batch']}) | {1 / gan['gsft']['s_per_image']:.1f} | {gan['gsft']['peak_gib']:.2f} |",
              f"| Food-11 JPEG decode + resize to {SIZE}² (one process) | {1 / r['decode']['s_per_image']:.1f} | {r['decode']['peak_gib']:.2f} |",
              "", "## Evaluation of ResNet50's maps, per method", "",
              "| method | map ms/image | map + scores ms/image |", "|---|---:|---:|"]  # fmt: skip
    ev = r["evaluation"]
    scores = ev["scores_per_map"]["s_per_image"]
    for method, cost in ev["explain"].items():
        note = " (*extrapolated*: (channels + 1) forwards)" if cost.get("extrapolated") else ""
        lines.append(f"| {method}{note} | {cost['s_per_image'] * 1000:.1f} | {(cost['s_per_image'] + scores) * 1000:.1f} |")
    lines += ["", "Grad-CAM, the penultimate layer's Grad-CAM and the CGMA maps are read from the CGMA cache: their "
              "cost is the precompute's (above).", "", "Per map, on the images of each subset:", "", "| | ms/image |", "|---|---:|",
              f"| scores on every evaluated image (AD, IC, Win, matched and top areas, agreement) | {scores * 1000:.1f} |",
              f"| deletion + insertion ({r['deletion_steps']} steps) on the AUC images | {ev['deletion_insertion_per_map']['s_per_image'] * 1000:.1f} |",
              f"| ROAD (MoRF + LeRF, 5 percentiles, linear imputation) on the ROAD images | {ev['road_per_map']['s_per_image'] * 1000:.1f} |",
              f"| condition importance (2 x K GAN passes) on the AUC images, once per image | {ev['condition_importance']['s_per_image'] * 1000:.1f} |",
              "", "`python -m cgmagan.reproduce paper --dry-run` multiplies these by each job's counts."]  # fmt: skip
    return "\n".join(lines) + "\n"


def measure(group: str, device: torch.device, batch: int, repeats: int) -> dict:
    """One group of measurements (a backbone's stages, a GAN, decoding, the evaluation)."""
    if group in BACKBONES:
        return backbone_costs(group, device, batch, repeats)
    if group == "gan":
        return gan_costs(device, steps=repeats + 1)
    if group == "decode":
        with tempfile.TemporaryDirectory() as tmp:
            return decode_costs(Path(tmp), images=4 * batch)
    if group == "evaluation":
        return evaluation_costs(device, batch=min(batch, 4) if device.type == "cpu" else batch, repeats=1)
    raise SystemExit(f"unknown group {group!r}")


GROUPS = (*BACKBONES, "gan", "decode", "evaluation")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None, help="images per batch (default: 8 on a CPU, 32 on a GPU)")
    parser.add_argument("--repeats", type=int, default=2, help="timed batches per measurement")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--group", choices=GROUPS, help=argparse.SUPPRESS)  # one group, in the process it runs in
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    batch = args.batch or (32 if device.type == "cuda" else 8)
    if args.group:  # a fresh process per group: one group's memory is not another's peak
        print(json.dumps(measure(args.group, device, batch, args.repeats)), flush=True)
        return {}
    what = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"CPU, {torch.get_num_threads()} threads ({platform.processor() or platform.machine()})")  # fmt: skip
    result = {"device": what, "device_type": device.type, "torch": torch.__version__, "date": date.today().isoformat(),
              "batch": batch, "size": SIZE, "deletion_steps": 20,
              "peak_kind": "the allocator's peak GPU memory" if device.type == "cuda"
              else "the resident set of a process that measures one group (imports included)"}  # fmt: skip
    for group in GROUPS:
        cmd = [sys.executable, __file__, "--group", group, "--device", args.device, "--batch", str(batch),
               "--repeats", str(args.repeats)]  # fmt: skip
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
        *progress, last = done.stdout.strip().splitlines()
        print("\n".join(progress), flush=True)
        result[group] = json.loads(last)
    result["backbones"] = {name: result.pop(name) for name in BACKBONES}
    resnet = result["backbones"]["resnet50"]
    result["evaluation"]["explain"]["scorecam"] = {
        "s_per_image": (resnet["target_channels"] + 1) * resnet["forward"]["s_per_image"], "extrapolated": True}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "paper_scale.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (args.out / "paper_scale.md").write_text(text)
    print(text)
    return result


if __name__ == "__main__":
    main()
