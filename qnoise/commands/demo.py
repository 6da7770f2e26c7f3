"""``qnoise demo``: a first look at the two quantizations of an SNN, computed on the spot.

1. Rate coding: an IF neuron (``v[0] = theta/2``, reset by subtraction) fed constant inputs for T steps;
   its mean output against the ReLU it approximates, as SQNR, for growing T.
2. Weights: SQNR of a k-bit weight quantizer for a freshly initialised conv layer, per rounding mode.
"""

from __future__ import annotations

import argparse

import torch


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="print a small live analysis of rate and weight quantization noise")
    p.add_argument("--timesteps", default="1,2,4,8,16,32", help="comma-separated T values")
    p.add_argument("--bits", default="1,2,3,4,8", help="comma-separated weight bit widths")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..metrics import sqnr_db
    from ..neurons import IF
    from ..quant import binarize, quantize

    torch.manual_seed(args.seed)
    ts = [int(t) for t in args.timesteps.split(",")]
    x = torch.rand(4096) * 1.2 - 0.1  # inputs around the threshold range [0, 1]
    relu = x.clamp(0, 1)
    print("Rate coding: IF neuron (theta=1, v0=theta/2) vs clamp(x, 0, theta)")
    print(f"{'T':>4}  {'SQNR dB':>8}  {'levels':>6}")
    for t in ts:
        out = IF(threshold=1.0, v_init="half")(x.expand(t, 1, -1).contiguous())
        print(f"{t:>4}  {sqnr_db(relu, out.mean(0)[0]):8.2f}  {t + 1:>6}")
    conv = torch.nn.Conv2d(32, 64, 3)
    w = conv.weight.detach()
    print("\nWeights: Conv2d(32, 64, 3), per-tensor symmetric quantization, SQNR dB")
    print(f"{'bits':>4}  {'nearest':>8}  {'truncate':>8}  {'stochastic':>10}")
    gen = torch.Generator().manual_seed(args.seed)
    for b in (int(v) for v in args.bits.split(",")):
        if b == 1:
            print(f"{1:>4}  {sqnr_db(w, binarize(w)):8.2f}  {'(binary, mean|w| * sign w)':>20}")
            continue
        cells = [sqnr_db(w, quantize(w, b, r, generator=gen)) for r in ("nearest", "truncate", "stochastic")]
        print(f"{b:>4}  {cells[0]:8.2f}  {cells[1]:8.2f}  {cells[2]:10.2f}")
    return 0
