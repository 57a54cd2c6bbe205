"""Cost of one StructRepDiff training step (U-Net forward, backward and Adam) for a preset (docs/benchmarks.md).

Random normalised representations and levels stand in for data: the cost depends only on the shapes. The first
steps warm up the allocator and are reported but left out of the median.

    python bench/structrepdiff_unet_step.py --preset paper --batch 64 --steps 4
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from omegaconf import OmegaConf

from crystalgen_structrepdiff.model import StructRepDiff


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small", help="small or paper")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=8, help="steps to run, the first --warmup of them not counted")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = OmegaConf.load(StructRepDiff.presets()[args.preset]).model
    model = StructRepDiff(cfg)
    unet, length, levels = model.denoiser, model.layout.size, int(cfg.num_steps)
    optimizer = torch.optim.Adam(unet.parameters(), lr=1e-4)
    x = torch.randn(args.batch, length)
    t = torch.randint(1, levels + 1, (args.batch,))
    seconds = []
    for _ in range(args.steps):
        start = time.perf_counter()
        loss = (unet.predict(x, t) - x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    timed = seconds[args.warmup:] or seconds
    print(f"preset {args.preset}: U-Net {sum(q.numel() for q in unet.parameters()):,} parameters, length {length}, "
          f"batch {args.batch}, {args.threads} thread(s)")
    print("seconds per step: " + ", ".join(f"{s:.2f}" for s in seconds) + f"; median after warm-up {statistics.median(timed):.2f}")


if __name__ == "__main__":
    main()
