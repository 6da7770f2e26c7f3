"""scikit-learn's bundled handwritten digits (8 x 8 pixels, 10 classes, 1,797 samples) as T-step inputs.

Works offline. Pixels (0..16 in the source) are scaled to [0, 1]. Encodings:

- ``"static"``: the same image at every timestep, ``x[t] = image``.
- ``"poisson"``: Bernoulli rate coding, ``x[t] = 1`` with probability ``image`` independently per timestep and
  pixel, from a ``torch.Generator`` seeded by ``(seed, sample index in the full set)``: the same sample always
  gets the same spikes, in any split, batch or order.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

ENCODINGS = ("static", "poisson")


@lru_cache(maxsize=1)
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 images as float32 ``[N, 1, 8, 8]`` in [0, 1] and their int64 labels ``[N]``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]
    return images, bunch.target.astype(np.int64)


def sample_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit generator seed for sample ``index`` under ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> np.uint64(1))


class DigitsDataset(Dataset):
    """Samples ``(x, label)``: ``x`` float32 ``[T, 1, 8, 8]`` with values in [0, 1], ``label`` int in 0..9.

    ``indices`` select samples of the full set (see ``digits_arrays``); they also seed the Poisson spikes.
    """

    name = "digits"
    input_shape = (1, 8, 8)
    classes = tuple(str(d) for d in range(10))
    num_classes = 10

    def __init__(self, indices, *, split: str, timesteps: int, encoding: str = "static", seed: int = 0):
        images, labels = digits_arrays()
        self.indices = np.asarray(indices, dtype=np.int64)
        self.images = torch.from_numpy(images[self.indices])
        self.labels = torch.from_numpy(labels[self.indices])
        self.split = split
        self.timesteps = timesteps
        self.encoding = encoding
        self.seed = seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self._encode(i), int(self.labels[i])

    def __repr__(self) -> str:
        return (f"DigitsDataset(split={self.split!r}, samples={len(self)}, timesteps={self.timesteps}, "
                f"encoding={self.encoding!r})")

    @property
    def targets(self) -> list[int]:
        return self.labels.tolist()

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split at once: ``X`` float32 ``[N, T, 1, 8, 8]``, ``y`` int64 ``[N]``."""
        if self.encoding == "static":
            x = self.images[:, None].expand(-1, self.timesteps, -1, -1, -1).contiguous()
        else:
            x = torch.stack([self._encode(i) for i in range(len(self))]) if len(self) else \
                torch.zeros(0, self.timesteps, *self.input_shape)
        return x, self.labels.clone()

    def _encode(self, i: int) -> torch.Tensor:
        image = self.images[i]
        if self.encoding == "static":
            return image.expand(self.timesteps, -1, -1, -1).clone()
        gen = torch.Generator().manual_seed(sample_seed(self.seed, int(self.indices[i])))
        draws = torch.rand((self.timesteps, *self.input_shape), generator=gen)
        return (draws < image).to(torch.float32)
