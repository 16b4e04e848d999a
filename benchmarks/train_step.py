"""Time of one training step in fp32 and under bf16 autocast, side by side in one process.

A step is what ``vidcolor train`` does for one batch of the default recipe's shape: forward,
L1 on a,b, backward and an AdamW update, on a generator from the registry. The two precisions
alternate, so a noisy machine slows both alike; the ratio is the figure.

    python benchmarks/train_step.py [--arch unet-efficientnet-lite0] [--batch 16] [--crop 160]
        [--threads 2] [--repeats 6]

bf16 only pays on CPUs with bfloat16 instructions (AVX512-BF16 or AMX); elsewhere it is slower.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="unet-efficientnet-lite0")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=160)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from vidcolor.train.fit import cpu_has_native_bf16

    from vidcolor.models.registry import build_generator

    lum = torch.rand(args.batch, 1, args.crop, args.crop) * 100
    target = (torch.rand(args.batch, 2, args.crop, args.crop) - 0.5) * 100
    runs = {}
    for precision in ("fp32", "bf16"):
        net = build_generator({"arch": args.arch}).train()
        runs[precision] = (net, torch.optim.AdamW(net.parameters(), 1e-4))

    def step(precision: str) -> float:
        net, optimiser = runs[precision]
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            ab = net(lum)
            ab = ab["ab"] if isinstance(ab, dict) else ab  # classification nets also give logits
            loss = (ab.float() - target).abs().mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return time.perf_counter() - started

    for precision in runs:  # warm-up: oneDNN picks its kernels on the first call
        step(precision)
    times: dict[str, list[float]] = {precision: [] for precision in runs}
    for _ in range(args.repeats):
        for precision in runs:
            times[precision].append(step(precision))
    fp32, bf16 = (statistics.median(times[p]) for p in ("fp32", "bf16"))
    print(
        f"{args.arch}, batch {args.batch} at {args.crop}x{args.crop}, {args.threads} threads, "
        f"bf16 instructions: {'yes' if cpu_has_native_bf16() else 'no'}"
    )
    print(f"fp32: {fp32:.3f} s/step  bf16 autocast: {bf16:.3f} s/step  ratio {fp32 / bf16:.2f}x")


if __name__ == "__main__":
    main()
