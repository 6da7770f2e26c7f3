"""Training: direct SNN training (BPTT, surrogate gradients, trainable thresholds, weight QAT), quantized
ANN training (LearnableClip, optionally progressive), ANN -> SNN conversion and layer-wise fine-tuning.

    train(TrainConfig(...), out)          a whole run, resumable, saved as a checkpoint in ``out``
    convert_to_snn(ann, signed=False)     quantized ANN -> IF network (theta = alpha, T = 2^b - 1, BN folded)
    layerwise_finetune(snn, ann, ...)     per-layer MSE between SNN rate and ANN activation
    evaluate(model, batches, device)      accuracy, loss and sample count
"""

from .config import TrainConfig
from .loop import Batches, evaluate, model_input, predict, train_epoch
from .run import build_for, train
from .splits import load_split

__all__ = ["Batches", "TrainConfig", "build_for", "evaluate", "load_split", "model_input", "predict", "train",
           "train_epoch"]
