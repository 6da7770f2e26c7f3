"""Deterministic, stratified train / validation / test splits by sample label.

Every split is a pure function of the labels (in listing order), the fractions and the seed: the same copy of a
dataset always splits the same way, whatever the machine, and the splits are disjoint.
"""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")


def held_out_count(n: int, fraction: float) -> int:
    """Number of samples a ``fraction`` of ``n`` holds out: ``round(fraction * n)``, halves rounded up."""
    return int(np.floor(fraction * n + 0.5))


def stratified_holdout(labels, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into (kept, held) with ``held_out_count(len(labels), fraction)`` held out.

    Each class gives ``floor(fraction * n_class)`` samples, and the remaining quota goes one sample each to the
    classes with the largest fractional remainders (ties: lower class first), so class shares stay within one
    sample of ``fraction``. Within a class the samples are drawn by ``rng``. Both outputs are sorted int arrays.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    sizes = np.array([(labels == c).sum() for c in classes])
    exact = fraction * sizes
    quota = np.floor(exact).astype(int)
    extra = held_out_count(len(labels), fraction) - quota.sum()
    order = np.lexsort((np.arange(len(classes)), -(exact - quota)))  # largest remainder first, stable
    quota[order[:extra]] += 1
    held = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota, strict=True)]
    held = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=int)
    kept = np.setdiff1d(np.arange(len(labels)), held)
    return kept, held


def split_indices(labels, split: str, *, has_test: bool, val_fraction: float, test_fraction: float,
                  seed: int) -> np.ndarray:
    """Indices (sorted) of ``split`` among samples with these ``labels``.

    ``has_test=True``: ``labels`` are the release's training set (its test set is read separately); ``val`` is a
    stratified ``val_fraction`` of it and ``train`` the rest. ``has_test=False``: ``labels`` are the whole
    release; ``test`` is a stratified ``test_fraction`` of it, ``val`` a ``val_fraction`` of the remainder and
    ``train`` the rest. Seeded by ``seed`` (one independent stream for each cut).
    """
    labels = np.asarray(labels)
    pool = np.arange(len(labels))
    if not has_test:
        pool, test = stratified_holdout(labels, test_fraction, np.random.default_rng([seed, 0]))
        if split == "test":
            return test
    train, val = stratified_holdout(labels[pool], val_fraction, np.random.default_rng([seed, 1]))
    return pool[val] if split == "val" else pool[train]


def stratified_subset(labels, limit: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a class-balanced subset of ``limit`` samples (all when ``limit`` is None or larger)."""
    n = len(labels)
    if limit is None or limit >= n:
        return np.arange(n)
    _, held = stratified_holdout(labels, limit / n, np.random.default_rng([seed, 2]))
    return held
