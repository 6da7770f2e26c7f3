"""Training: direct SNN training (BPTT, surrogate gradients, trainable thresholds, weight QAT), quantized
ANN training (LearnableClip, optionally progressive), ANN -> SNN conversion and layer-wise fine-tuning.

    train(TrainConfig(...), out)               a whole run, resumable, saved as a checkpoint in ``out``
    convert_to_snn(ann, signed=False)          quantized ANN -> IF network (theta = alpha, T = 2^b - 1, BN folded)
    convert_checkpoint(ann_dir, out, ...)      the same, checkpoint to checkpoint, with optional fine-tuning
    layerwise_finetune(snn, ann, batches, T)   per-layer MSE between SNN rate and ANN activation
    evaluate(model, batches, device)           accuracy, loss and sample count of time-major batches
    evaluate_model(model, split="test")        the same for a checkpointed model, fed as its checkpoint says

Post-training quantization of a trained model: `qnoise.models.apply_quantization` (weights, thresholds,
membrane, any rounding); in-training: the same spec through `TrainConfig` (``weight_bits``, ...).
"""

from .config import TrainConfig
from .convert import convert_to_snn, fold_bn, timesteps_for
from .convert_run import convert_checkpoint
from .evaluation import evaluate_model
from .finetune import layerwise_finetune
from .loop import Batches, evaluate, model_input, predict, train_epoch
from .run import build_for, train
from .splits import load_split

__all__ = ["Batches", "TrainConfig", "build_for", "convert_checkpoint", "convert_to_snn", "evaluate",
           "evaluate_model", "fold_bn", "layerwise_finetune", "load_split", "model_input", "predict",
           "timesteps_for", "train", "train_epoch"]
