"""``qnoise train``: train a direct SNN or a quantized ANN on a dataset and save a checkpoint directory.

Rerunning the same command continues after the last completed epoch (``<out>/last/``).
"""

from __future__ import annotations

import argparse
import json

from . import _args


def _bits(text: str) -> int | None:
    """Bits 1..31, or none / float / 32: float."""
    return None if text.lower() in ("none", "float", "32") else _args.int_in(1, 32, "a bit width (or none)")(text)


def _split(text: str) -> str | None:
    return None if text.lower() == "none" else text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a direct SNN (BPTT) or a quantized ANN; resumable",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="digits", help="digits, nmnist, dvsgesture, cifar10dvs, ncaltech101, shd")
    p.add_argument("--model", default="cnn", help="mlp, cnn or resnet")
    p.add_argument("--mode", default="direct", choices=("direct", "ann"))
    p.add_argument("--model-options", default="{}", help='JSON architecture options, e.g. \'{"channels": [32, 64]}\'')
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    g = p.add_argument_group("SNN neurons (mode direct)")
    g.add_argument("--neuron", default="if", choices=("if", "lif"))
    g.add_argument("--threshold", type=_args.float_positive("a threshold"), default=1.0)
    g.add_argument("--fixed-threshold", action="store_true", help="do not learn thresholds")
    g.add_argument("--v-init", default="zero", choices=("zero", "half"))
    g.add_argument("--surrogate", default="atan", choices=("atan", "sigmoid", "rectangle"))
    g = p.add_argument_group("ANN activations (mode ann)")
    g.add_argument("--act-bits", type=_bits, default=None, help="LearnableClip bits (none: ReLU)")
    g.add_argument("--act-alpha", type=_args.float_positive("a clip level"), default=1.0, help="initial clip level")
    g.add_argument("--progressive", action="store_true", help="train float -> 4 -> 3 -> 2 bits down to --act-bits")
    g = p.add_argument_group("quantization during training")
    g.add_argument("--weight-bits", type=_bits, default=None,
                   help="bits per weight (none: float; 1: binary with any method)")
    g.add_argument("--weight-method", default="uniform", choices=("uniform", "sigmoid", "binary", "ternary"))
    g.add_argument("--weight-rounding", default="nearest", choices=("nearest", "truncate", "stochastic"))
    g.add_argument("--keep-first-last", action="store_true", help="first and last weight layer stay float")
    g.add_argument("--threshold-bits", type=_bits, default=None)
    g.add_argument("--threshold-rounding", default="nearest", choices=("nearest", "truncate", "stochastic"))
    g.add_argument("--state-bits", type=_bits, default=None, help="membrane bits")
    g.add_argument("--state-rounding", default="nearest", choices=("nearest", "truncate", "stochastic"))
    g.add_argument("--weight-levels", default="uniform", choices=("uniform", "pow2", "data"),
                   help="sigmoid-sum levels above 2 bits: uniform integers, the paper's {0, +-1, +-2, +-4, ...}, "
                        "or k-means on the weights")
    g.add_argument("--temperature-k", type=float, default=10.0,
                   help="sigmoid-sum temperature T = k * (epoch + 1) (the paper: k in 5, 10, 20, 40)")
    g.add_argument("--temperature-cap", type=float, default=2000.0)
    g.add_argument("--quantizer-lr-scale", type=float, default=0.1,
                   help="learning rate of the sigmoid-sum alpha, beta and steps, relative to --lr")
    g = p.add_argument_group("data and optimisation")
    g.add_argument("--timesteps", type=_args.timesteps, default=4, help="T: time bins of the input")
    g.add_argument("--data-root", default=None,
                   help="folder holding the dataset release (e.g. ../shared/data/nmnist-1k)")
    g.add_argument("--data-options", default="{}",
                   help="JSON options for load_dataset, e.g. '{\"encoding\": \"poisson\"}'")
    g.add_argument("--train-split", default="train")
    g.add_argument("--val-split", type=_split, default="val", help="'none' to skip")
    g.add_argument("--test-split", type=_split, default="test", help="'none' to skip")
    g.add_argument("--augment", default=None, choices=("shift", "events"),
                   help="shift: random +-2 px translation of the frames; events: tonic event augmentations "
                        "(drop, shift, spatial and time jitter), re-binned every epoch")
    g.add_argument("--augment-options", default="{}",
                   help='JSON strengths for --augment events, e.g. \'{"shift": 2, "jitter": 1.0, "drop": 0.2, '
                        '"time_jitter": 1000}\'')
    g.add_argument("--init", default=None, metavar="CHECKPOINT",
                   help="start from this checkpoint's float weights (same architecture); weight quantizers are "
                        "initialised from them")
    g.add_argument("--epochs", type=_args.epochs, default=10)
    g.add_argument("--batch-size", type=_args.batch_size, default=64)
    g.add_argument("--lr", type=_args.float_positive("a learning rate"), default=1e-3)
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:0, ...")
    g.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _json(text: str, flag: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag} must be a JSON object: {err}") from err
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from ..models import check_arch_options
    from ..train import TrainConfig, train

    try:  # before the data is loaded
        check_arch_options(args.model, _json(args.model_options, "--model-options"))
    except ValueError as err:
        raise ValueError(f"--model / --model-options: {err}") from err

    cfg = TrainConfig(
        dataset=args.dataset, model=args.model, mode=args.mode,
        model_options=_json(args.model_options, "--model-options"), neuron=args.neuron, threshold=args.threshold,
        learn_threshold=not args.fixed_threshold, v_init=args.v_init, surrogate=args.surrogate,
        act_bits=args.act_bits, act_alpha=args.act_alpha, progressive=args.progressive,
        weight_bits=args.weight_bits, weight_method=args.weight_method, weight_rounding=args.weight_rounding,
        keep_first_last=args.keep_first_last, threshold_bits=args.threshold_bits,
        threshold_rounding=args.threshold_rounding, state_bits=args.state_bits, state_rounding=args.state_rounding,
        weight_levels=args.weight_levels, temperature_k=args.temperature_k, temperature_cap=args.temperature_cap,
        quantizer_lr_scale=args.quantizer_lr_scale, timesteps=args.timesteps, data_root=args.data_root,
        data_options=_json(args.data_options, "--data-options"), train_split=args.train_split,
        val_split=args.val_split, test_split=args.test_split, augment=args.augment,
        augment_options=_json(args.augment_options, "--augment-options"), init=args.init, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, seed=args.seed, device=args.device,
        progress=not args.no_progress)
    model = train(cfg, args.out)
    metrics = model.qnoise_checkpoint.get("metrics", {})
    shown = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(metrics.items()))
    print(f"saved {args.out}: {shown}")
    return 0
