"""Working memory of each model's training step and sampling batch, for the constants of ``memory_cost``.

Every case runs in a fresh subprocess (OMP_NUM_THREADS=1, one torch thread) on synthetic crystals: random positions
in a triclinic cell (space group P1, so SymmCD's representatives are the atoms), ``--volume`` A^3 per atom. The
model is built from its preset and fitted to these crystals (SymmCD's p(M | G) is then a point mass at the measured
size), the operation runs once on one crystal (optimiser state, tables built on first use), freed heap is returned
to the OS (malloc_trim) and the peak-RSS counter reset (/proc/self/clear_refs); then the operation runs on the batch
and the case reports the peak RSS above the RSS before it: the working bytes ``memory_cost`` must bound.

    training  forward, backward and Adam step of ``training_loss`` on ``batch`` crystals of ``nodes`` nodes
    sampling  prepare_sampling, ``--steps`` steps of the model's sampler, decode (CDVAE: N forced to ``nodes``;
              StructRepDiff: the U-Net loop, then the decoder on the crystals' true representations, with
              ``--recon-iterations`` Adam steps and one hop: the memory of a step does not depend on how many)
    pairs     StructRepDiff's decoder alone on dense crystals (``--dense-volume`` A^3 per atom), reporting the pair
              count its grouping estimates: the bytes per pair behind its per-batch overhead

    python bench/model_memory.py --out bench/results/model_memory_small.json
    python bench/model_memory.py --models symmcd --modes training
    python bench/model_memory.py --models symat --out bench/results/model_memory_symat_small.json
    python bench/model_memory.py --models gemsdiff --out bench/results/model_memory_gemsdiff_small.json
    python bench/model_memory.py --calibrate bench/results/model_memory_small.json

``largest_ratios`` (also printed) is what each plugin's memory.py constants are rounded up from: per model and mode,
the largest ratio of measured working bytes to what memory.py counts for the case (floats per crystal; for
StructRepDiff's 'pairs', estimated pairs).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (nodes, batch) measured per model and mode: sizes up to the small presets' limits (SymmCD 64 representatives,
#: CDVAE, SyMat and GemsDiff 20 atoms), batches up to the presets' 32-64, each case a few seconds on one thread.
GRID = {
    ("symmcd", "training"): [(4, 1), (4, 32), (16, 8), (16, 32), (32, 8), (64, 1), (64, 4)],
    ("symmcd", "sampling"): [(4, 1), (4, 32), (16, 32), (64, 4)],
    ("cdvae", "training"): [(4, 1), (4, 32), (12, 8), (12, 32), (20, 8), (20, 32)],
    ("cdvae", "sampling"): [(4, 1), (4, 32), (12, 32), (20, 32)],
    ("symat", "training"): [(4, 1), (4, 32), (12, 8), (12, 32), (20, 8), (20, 32)],
    ("symat", "sampling"): [(4, 1), (4, 32), (12, 32), (20, 32)],
    ("gemsdiff", "training"): [(4, 1), (4, 32), (12, 8), (12, 32), (20, 8), (20, 32)],
    ("gemsdiff", "sampling"): [(4, 1), (4, 32), (12, 32), (20, 32)],
    ("structrepdiff", "training"): [(8, 1), (8, 64), (8, 256)],
    ("structrepdiff", "sampling"): [(4, 1), (8, 32), (20, 32)],
    ("structrepdiff", "pairs"): [(20, 4), (20, 16)],
}


# -- one case (child process) ----------------------------------------------------------------------------------------
def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_bytes() -> int:
    with open("/proc/self/status") as fh:
        line = next(line for line in fh if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def reset_peak() -> None:
    """Give freed heap back to the OS and restart the peak counter at the current RSS."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def structures(nodes: int, count: int, volume: float, seed: int):
    import numpy as np
    from pymatgen.core import Lattice, Structure

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        side = (nodes * volume) ** (1 / 3)
        lattice = Lattice.from_parameters(side, side * 1.07, side * 0.94, 84.0, 97.0, 101.0)
        species = rng.choice([3, 8, 12, 14, 26], size=nodes).tolist()
        out.append(Structure(lattice, species, rng.random((nodes, 3))))
    return out


def build(name: str, preset: str, args: argparse.Namespace):
    from omegaconf import OmegaConf

    from crystalgen.runner.models import model_class

    cls = model_class(name)
    cfg = OmegaConf.load(cls.presets()[preset]).model
    if name == "structrepdiff":
        cfg.decoder.iterations, cfg.decoder.hops = args.recon_iterations, 1
    return cls, cfg


def run_case(args: argparse.Namespace) -> dict:
    import torch

    from crystalgen.data.crystal import collate
    from crystalgen.runner.models import build_sampler
    from crystalgen.state import SampleRequest

    torch.set_num_threads(1)
    torch.manual_seed(0)
    name, mode, nodes, batch = args.case[0], args.case[1], int(args.case[2]), int(args.case[3])
    cls, cfg = build(name, args.preset, args)
    transform = cls.transform(cfg)
    volume = args.dense_volume if mode == "pairs" else args.volume
    items = [transform(s) for s in structures(nodes, batch, volume, seed=1)]
    sizes = sorted({int(d.num_nodes) for d in items})
    if sizes != [nodes]:
        raise RuntimeError(f"{name}: synthetic crystals have {sizes} nodes, not {nodes}")
    model = cls.from_config(cfg)
    model.fit_statistics(items)
    extra: dict = {}

    if mode == "training":
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
        model.train()

        def operation(chosen):
            optimiser.zero_grad(set_to_none=True)
            model.training_loss(collate(chosen))["loss"].backward()
            optimiser.step()
    elif mode == "sampling":
        model.eval()
        sampler = build_sampler(model, None, args.steps, {"n_steps_each": 1} if name in ("cdvae", "symat") else None)
        if name == "cdvae":
            model.heads.predict_num_atoms = lambda z: torch.full((z.shape[0],), nodes, dtype=torch.long)
        if name == "symat":  # every decoded crystal: `nodes` silicon atoms
            from crystalgen_symat.heads import Composition

            def silicon(z_a):
                counts = torch.zeros(z_a.shape[0], model.num_elements, dtype=torch.long)
                counts[:, 13] = nodes
                return Composition(counts)

            model.heads.composition = silicon

        def operation(chosen):
            with torch.no_grad():
                request = SampleRequest(len(chosen), spacegroup=1 if name == "symmcd" else None)
                condition = model.prepare_sampling(request)
                state = sampler.run(model, condition, generator=torch.Generator().manual_seed(0))
                model.decode(state, condition)
                if name == "structrepdiff":
                    model.decode_raw(collate(chosen).representation.double())
    else:  # pairs: StructRepDiff's decoder alone
        model.eval()
        r = model.decoder.settings
        radius = model.encoder.params.cutoff + r.skin
        extra["pairs"] = sum(r.trials * (nodes**2 / abs(float(torch.linalg.det(d.lattice[0].double()))) * 4 / 3 * math.pi
                                         * radius**3 + nodes) for d in items)

        def operation(chosen):
            with torch.no_grad():
                model.decode_raw(collate(chosen).representation.double())

    operation(items[:1])  # warm-up
    reset_peak()
    before = rss_bytes()
    tick = time.perf_counter()
    operation(items)
    seconds = time.perf_counter() - tick
    return {"model": name, "mode": mode, "nodes": nodes, "batch": batch, "working_bytes": peak_bytes() - before,
            "rss_before_bytes": before, "seconds": round(seconds, 2), **extra}


# -- calibration ------------------------------------------------------------------------------------------------------
def counted(name: str, mode: str, nodes: int, preset: str) -> float:
    """What each plugin's memory.py counts for one crystal (floats; StructRepDiff 'pairs': nothing per crystal)."""
    from omegaconf import OmegaConf

    from crystalgen.runner.models import model_class

    cfg = OmegaConf.load(model_class(name).presets()[preset]).model
    if name == "symmcd":
        from crystalgen_symmcd import memory

        return memory.pair_floats(cfg.denoiser) * nodes**2 + memory.node_floats(cfg.denoiser) * nodes + memory.CRYSTAL_FLOATS
    if name == "cdvae":
        from crystalgen_cdvae import memory

        return (memory.encoder_floats(cfg.encoder) + memory.decoder_floats(cfg.denoiser)) * nodes + memory.CRYSTAL_FLOATS
    if name == "symat":
        from crystalgen_symat import memory

        return (memory.network_floats(cfg.encoder) + memory.network_floats(cfg.denoiser)) * nodes + memory.CRYSTAL_FLOATS
    if name == "gemsdiff":
        from crystalgen_gemsdiff import memory

        return memory.atom_floats(cfg.denoiser) * nodes + memory.CRYSTAL_FLOATS
    from crystalgen_structrepdiff import memory
    from crystalgen_structrepdiff.model import StructRepDiff

    return memory.unet_floats(StructRepDiff.transform(cfg).layout.size, cfg.denoiser)


def calibrate(results: list[dict], preset: str) -> dict[str, float]:
    """The constants of each memory.py: the largest measured ratio, per model and mode (bytes per counted float;
    StructRepDiff 'pairs': bytes per estimated pair)."""
    ratios: dict[str, float] = {}
    for r in results:
        key = f"{r['model']}.{r['mode']}"
        if r["mode"] == "pairs":
            ratio = r["working_bytes"] / r["pairs"]
        else:
            ratio = r["working_bytes"] / (r["batch"] * counted(r["model"], r["mode"], r["nodes"], preset))
        ratios[key] = max(ratios.get(key, 0.0), ratio)
    return {k: round(v, 2) for k, v in ratios.items()}


# -- the driver --------------------------------------------------------------------------------------------------------
def versions() -> dict:
    from importlib.metadata import version

    import torch

    names = ["crystalgen-core", "crystalgen-symmcd", "crystalgen-cdvae", "crystalgen-structrepdiff", "crystalgen-symat", "crystalgen-gemsdiff",
             "torch_geometric"]
    found = {}
    for n in names:
        try:
            found[n] = version(n)
        except Exception:  # noqa: BLE001 - an uninstalled package is recorded as such
            found[n] = None
    return {"python": platform.python_version(), "torch": torch.__version__, **found}


def commit() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="symmcd,cdvae,structrepdiff")
    p.add_argument("--modes", default="training,sampling,pairs")
    p.add_argument("--preset", default="small")
    p.add_argument("--volume", type=float, default=12.0, help="A^3 per atom of the synthetic crystals")
    p.add_argument("--dense-volume", type=float, default=2.0, help="A^3 per atom of the 'pairs' cases")
    p.add_argument("--steps", type=int, default=5, help="sampler steps of a sampling case")
    p.add_argument("--recon-iterations", type=int, default=20, help="StructRepDiff reconstruction steps per hop")
    p.add_argument("--out", help="write the JSON here (bench/results/...)")
    p.add_argument("--calibrate", metavar="JSON", help="only print the constants that a results file gives")
    p.add_argument("--case", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.case:
        print(json.dumps(run_case(args)))
        return
    if args.calibrate:
        saved = json.loads(Path(args.calibrate).read_text())
        print(json.dumps(calibrate(saved["results"], saved["preset"]), indent=2))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    passthrough = ["--preset", args.preset, "--volume", str(args.volume), "--dense-volume", str(args.dense_volume),
                   "--steps", str(args.steps), "--recon-iterations", str(args.recon_iterations)]
    results = []
    load_before = os.getloadavg()
    for (name, mode), grid in GRID.items():
        if name not in args.models.split(",") or mode not in args.modes.split(","):
            continue
        for nodes, batch in grid:
            cmd = [sys.executable, __file__, *passthrough, "--case", name, mode, str(nodes), str(batch)]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            results.append(row)
            print(json.dumps(row), flush=True)
    report = {"command": "python " + " ".join([os.path.relpath(__file__, ROOT), *sys.argv[1:]]), "commit": commit(),
              "host": platform.node(), "cpus": os.cpu_count(), "threads": 1, "preset": args.preset,
              "settings": {k: v for k, v in vars(args).items() if k not in ("case", "out")},
              "load_average_before": load_before, "load_average_after": os.getloadavg(), "versions": versions(),
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": results,
              "largest_ratios": calibrate(results, args.preset)}
    print(json.dumps(report["largest_ratios"], indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
