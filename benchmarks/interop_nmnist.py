"""Bring your own SNN, end to end (issue 11; run by hand, not in CI):

1. train a small SpikingJelly CNN on ``../shared/data/nmnist-1k`` (800 train / 200 val recordings, T = 8 frames
   of event counts, qnoise's reader), with SpikingJelly's own neurons and surrogate BPTT;
2. export it to NIR with SpikingJelly's exporter (``model.nir``);
3. ``qnoise import model.nir --out ck`` (a checkpoint folder: safetensors + JSON module graph);
4. ``qnoise analyze --reference snn`` at 4-bit weights (the quantized SNN against itself at full precision);
5. ``qnoise sweep`` over weight bits, against the float SNN;
6. writes the 200 validation samples as an evaluation batch the dashboard analyses on, and prints the accuracy
   over weight bits, the per-layer noise and the dashboard command that opens them.

    .venv/bin/python benchmarks/interop_nmnist.py                 # about 10 minutes on 2 shared cores
    .venv/bin/python benchmarks/interop_nmnist.py --epochs 2      # quicker, less accurate

Everything is written under ``runs/interop_nmnist/`` (``--out``); ``summary.json`` holds the numbers printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA_ROOT = str((REPO / ".." / "shared" / "data" / "nmnist-1k").resolve())
T = 8
WEIGHT_BITS = (2, 3, 4, 5, 6, 8, 32)


def network():
    import torch
    from spikingjelly.activation_based import functional, layer, neuron, surrogate
    from torch import nn

    torch.manual_seed(0)
    sg = surrogate.ATan()
    net = nn.Sequential(
        layer.Conv2d(2, 12, 5, stride=2, padding=2), neuron.IFNode(v_reset=0.0, surrogate_function=sg),  # 17 x 17
        layer.AvgPool2d(2),                                                                                 # 8 x 8
        layer.Conv2d(12, 24, 3, padding=1), neuron.LIFNode(tau=2.0, v_reset=0.0, surrogate_function=sg),
        layer.AvgPool2d(2),                                                                                 # 4 x 4
        layer.Flatten(), layer.Linear(24 * 4 * 4, 10), neuron.IFNode(v_reset=0.0, surrogate_function=sg))
    functional.set_step_mode(net, "m")
    return net


def load(split: str):
    from qnoise.data import dataset_tensors, load_dataset

    x, y = dataset_tensors(load_dataset("nmnist", split, root=DATA_ROOT, timesteps=T))
    return x.transpose(0, 1).contiguous(), y  # [T, N, 2, 34, 34]


def train(net, epochs: int, log) -> float:
    import torch
    from spikingjelly.activation_based import functional

    xs, ys = load("train")
    xv, yv = load("val")
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(xs.shape[1], generator=torch.Generator().manual_seed(epoch))
        start, correct = time.perf_counter(), 0
        for i in range(0, len(perm), 32):
            idx = perm[i:i + 32]
            functional.reset_net(net)
            rate = net(xs[:, idx]).mean(0)
            loss = torch.nn.functional.mse_loss(rate, torch.nn.functional.one_hot(ys[idx], 10).float())
            opt.zero_grad()
            loss.backward()
            opt.step()
            correct += int((rate.argmax(1) == ys[idx]).sum())
        val = accuracy(net, xv, yv)
        log(f"epoch {epoch + 1}/{epochs}: train {correct / len(perm):.3f}  val {val:.3f}  "
            f"{time.perf_counter() - start:.0f} s")
    return val


def accuracy(net, x, y) -> float:
    import torch
    from spikingjelly.activation_based import functional

    net.eval()
    with torch.no_grad():
        functional.reset_net(net)
        out = net(x).sum(0)
        functional.reset_net(net)
    return float((out.argmax(1) == y).float().mean())


def cli(*args: str) -> None:
    from qnoise.cli import main

    print("$ qnoise " + " ".join(args), flush=True)
    code = main(list(args))
    if code:
        raise SystemExit(f"qnoise {args[0]} exited with {code}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--out", default=str(REPO / "runs" / "interop_nmnist"))
    args = p.parse_args()
    import nir
    import torch
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"timesteps": T, "data": "nmnist-1k: 800 train / 200 val recordings", "epochs": args.epochs}

    net = network()
    summary["spikingjelly_val_accuracy"] = train(net, args.epochs, print)
    xv, yv = load("val")
    graph = export_to_nir(net, xv[:, :1], dt=1e-4)
    nir.write(str(out / "model.nir"), graph)
    print(f"exported {out / 'model.nir'}: {len(graph.nodes)} nodes")

    ck = out / "ck"
    # SpikingJelly fires at v >= theta; NIR cannot say so, the import is told (NIR's default is '>')
    cli("import", str(out / "model.nir"), "--out", str(ck), "--timesteps", str(T), "--dataset", "nmnist",
        "--fire", ">=")
    # the imported model gives SpikingJelly's outputs exactly
    from spikingjelly.activation_based import functional

    from qnoise.io import load_checkpoint

    model = load_checkpoint(ck)
    functional.reset_net(net)
    with torch.no_grad():
        same = bool(torch.equal(model(xv), net(xv)))
    summary["imported_outputs_equal"] = same
    print(f"imported model's outputs equal SpikingJelly's on the 200 validation samples: {same}")

    common = ["--checkpoint", str(ck), "--dataset", "nmnist", "--data-root", DATA_ROOT, "--split", "val",
              "--reference", "snn"]
    cli("analyze", *common, "--weight-bits", "4", "--out", str(out / "analyze-w4.parquet"), "--force")
    cli("sweep", *common, "--weight-bits", ",".join(map(str, WEIGHT_BITS)), "--timesteps", str(T),
        "--out", str(out / "sweep"), "--workers", "1")

    from qnoise.sweep import load_sweep
    from qnoise.table_files import read_parquet

    df = load_sweep(out / "sweep")
    last = df[df.t == df.timesteps]
    acc = last[(last.layer == "<output>") & (last.metric == "accuracy")].set_index("weight_bits").value
    summary["accuracy_by_weight_bits"] = {int(k): round(float(v), 4) for k, v in acc.sort_index().items()}
    noise = last[(last["mode"] == "propagated") & last.metric.isin(["sqnr_db", "err_own_mse", "err_prop_mse",
                                                                     "weight_sqnr_db", "firing_rate"])]
    table = noise.pivot_table(index=["weight_bits", "layer"], columns="metric", values="value")
    summary["per_layer"] = {f"{wb}b/{layer}": {k: round(float(v), 6) for k, v in row.items()}
                            for (wb, layer), row in table.iterrows()}
    # an evaluation batch beside the checkpoint: the dashboard's own analyses run on it (nmnist-1k has no test split)
    from qnoise.io import save_tensors

    save_tensors(out / "nmnist-val-200.safetensors", {"inputs": xv.transpose(0, 1).contiguous(), "labels": yv},
                 metadata={"dataset": "nmnist", "split": "val", "note": "inputs [N, T, 2, 34, 34]: event counts"})
    w4, _ = read_parquet(out / "analyze-w4.parquet")
    summary["analyze_w4_rows"] = len(w4)
    print("\naccuracy after T = 8 steps, by weight bits (32 = float):")
    print(acc.sort_index().to_string())
    print("\nper-layer noise against the float SNN (t = T):")
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nopen it in the dashboard:  qnoise dashboard --data {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
