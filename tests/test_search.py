"""Mixed precision under a budget (qnoise.search): the space and its moves, a guided search that reaches the
front an exhaustive search finds, the choice's tolerance backed by its interval, resumable evaluations that
never repeat, and a chosen checkpoint that reloads to the accuracy the search reported."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from qnoise.cli import main as cli
from qnoise.io import load_checkpoint
from qnoise.models import apply_quantization, build_model
from qnoise.neurons import spiking_neurons
from qnoise.probe import OUTPUT, analyze
from qnoise.quant import weight_bits, weight_layers
from qnoise.search import Candidate, Evaluator, SearchSpace, search
from qnoise.search.result import choose

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data" / "digits-snn-3bit"
LIMIT = 48


def sample():
    if not (SAMPLE / "model.safetensors").exists():
        pytest.skip("sample_data/digits-snn-3bit is missing (made by `qnoise sample-data`)")
    return SAMPLE


def reduced_space(timesteps: int = 7) -> dict:
    """conv1, conv2, fc3 at 8, 4 or 2 bits; the readout pinned at 8; float membranes: 27 configurations."""
    return {"weight_bits": (8, 4, 2), "state_bits": (32,), "timesteps": timesteps, "fixed": {"readout.body.0": 8}}


# ------------------------------------------------------------------------------------------------ space

def test_space_moves_neighbours_and_enumeration():
    model = build_model("mlp", (6,), 3, hidden=[8, 4])
    space = SearchSpace.for_model(model, (8, 4), weight_bits=(32, 4, 2), state_bits=(32, 8),
                                  fixed={"readout.body.0": 8})
    assert space.size == 3 * 3 * 1 * 2 * 2 * 2
    top = space.top()
    assert dict(top.weights) == {"fc1.body.1": 32, "fc2.body.0": 32, "readout.body.0": 8} and top.timesteps == 8
    moves = space.moves(top)
    assert len(moves) == 5  # two weight layers, two neurons, T (the readout is pinned)
    assert all(m.key != top.key for _, _, m in moves)
    bottom = top
    while space.moves(bottom):
        bottom = space.moves(bottom)[0][2]
    assert dict(bottom.weights)["fc1.body.1"] == 2 and bottom.timesteps == 4 and not space.moves(bottom)
    assert len({c.key for c in space.enumerate()}) == space.size
    assert top in set(space.neighbours(space.neighbours(top)[0]))
    with pytest.raises(ValueError, match="out of range"):
        SearchSpace.for_model(model, 4, weight_bits=(0, 4))


def test_a_lower_t_is_scored_by_the_accuracy_it_loses():
    """A T move's reference (the float SNN) runs at the lowered T too, so its disagreement and noise are 0 even
    when it loses accuracy: scored by that loss, it ranks after a lossless weight move, not with it."""
    from qnoise.search.strategy import _move_score

    model = build_model("mlp", (6,), 3, hidden=[8])
    space = SearchSpace.for_model(model, (6, 1), weight_bits=(32, 8), state_bits=(32,), fixed={"readout.body.0": 8})
    top = space.top()
    t_low = top.replace("timesteps", None, 1)
    w_low = top.replace("weights", "fc1.body.1", 8)
    rows = {top.key: (1.0, 0.0), t_low.key: (0.42, 0.0), w_low.key: (1.0, 0.0)}  # (accuracy, disagreement)
    store = {k: {"accuracy": a, "disagreement": d, "noise": 0.0, "memory_bits": 1000.0, "energy_pj": 100.0}
             for k, (a, d) in rows.items()}
    store[t_low.key]["energy_pj"] = store[w_low.key]["energy_pj"] = 50.0

    class Store:
        def get(self, c):
            return store[c.key]

    base = store[top.key]
    assert _move_score(Store(), top, base, "timesteps", None, (6, 1), 0) == pytest.approx(0.58 / 0.5)
    assert _move_score(Store(), top, base, "weights", "fc1.body.1", (32, 8), 0) == 0.0


def test_data_without_labels_is_refused_by_name():
    """A search ranks by accuracy: unlabelled data was a ``round(nan)`` crash inside the first evaluation."""
    import torch

    model = build_model("mlp", (1, 4, 4), 2).eval()
    with pytest.raises(ValueError, match="needs labelled data: the data given has no labels"):
        search(model, (torch.rand(8, 3, 1, 4, 4), None), space={"timesteps": [3, 2]}, progress=False)


def test_a_candidate_applies_every_layers_bits():
    model = build_model("mlp", (6,), 3, hidden=[8, 4])
    c = Candidate((("fc1.body.1", 2), ("fc2.body.0", 32), ("readout.body.0", 1)), (("act1", 6), ("act2", 32)), 4)
    apply_quantization(model, c.spec())
    assert [weight_bits(m) for _, m in weight_layers(model)] == [2, 32, 1]
    assert [n.state_bits for _, n in spiking_neurons(model)] == [6, None]
    assert Candidate.from_dict(c.as_dict()) == c


@pytest.mark.parametrize("sensitivity", [False, True])
def test_candidates_over_t_of_static_frames_are_one_run_with_their_own_records(sensitivity, monkeypatch):
    """The sample digits model is fed a static image: candidates that differ only in T are one run at the
    longest T, and each record is the one its own run gives, bit for bit."""
    from qnoise.probe import analysis as analysis_module

    model = load_checkpoint(sample())
    space = SearchSpace.for_model(model, (7, 3, 1), weight_bits=(8, 2), state_bits=(32,),
                                  fixed={"readout.body.0": 8})
    candidates = space.enumerate()
    runs = []
    original = analysis_module.Probe.step
    monkeypatch.setattr(analysis_module.Probe, "step", lambda self, x, *a: runs.append(x.shape[0]) or
                        original(self, x, *a))
    ev = Evaluator(model, "digits", {"limit": LIMIT, "batch_size": LIMIT})
    shared = ev.many(candidates, sensitivity)
    assert len(candidates) % 3 == 0 and runs == [7] * (len(candidates) // 3)  # one batch per run
    runs.clear()
    alone = [ev.many([c], sensitivity)[0] for c in candidates]
    assert sorted(runs) == sorted(c.timesteps for c in candidates)
    for a, b in zip(shared, alone, strict=True):
        assert a == b, a["key"]


# ------------------------------------------------------------------------------------------------ the choice

def test_the_choice_is_within_tolerance_only_when_its_interval_supports_it():
    table = pd.DataFrame({"label": ["top", "a", "b"], "key": ["t", "a", "b"], "accuracy": [0.98, 0.97, 0.90],
                          "samples": [1000, 1000, 50], "ci_low": [0.970, 0.960, 0.79], "ci_high": [0.99, 0.98, 0.96],
                          "memory_kib": [100.0, 40.0, 20.0], "memory_bits": [819200.0, 327680.0, 163840.0],
                          "energy_nj": [5.0, 3.0, 1.0], "energy_pj": [5000.0, 3000.0, 1000.0]})
    ref = table.iloc[0]
    chosen, text = choose(table, ref, {"memory_kib": 50}, 0.03)
    assert chosen["label"] == "a" and "which its interval supports" in text
    chosen, text = choose(table, ref, {"memory_kib": 25}, 0.03)
    assert chosen["label"] == "b" and "not supported by 50 samples" in text
    chosen, text = choose(table, ref, {"memory_kib": 10}, 0.03)
    assert chosen is None and "no evaluated configuration fits" in text


# ------------------------------------------------------------------------------------------------ searches

@pytest.mark.slow
def test_the_guided_search_reaches_the_exhaustive_front(tmp_path):
    """On a space small enough to enumerate (27 configurations of the sample digits CNN) the guided search's
    accuracy/memory front is the true one, from fewer evaluations; the exhaustive search reuses its
    evaluations (a configuration is never evaluated twice)."""
    ckpt = sample()
    guided = search(ckpt, "digits", space=reduced_space(), limit=LIMIT, out=tmp_path / "g", progress=False)
    shutil.copytree(tmp_path / "g", tmp_path / "e")
    full = search(ckpt, "digits", space=reduced_space(), limit=LIMIT, strategy="exhaustive", out=tmp_path / "e",
                  progress=False)
    assert full.extra["evaluations"] == 27 and full.loaded == guided.extra["evaluations"]
    truth = full.front_memory[["memory_bits", "accuracy"]].to_numpy().tolist()
    found = guided.front_memory[["memory_bits", "accuracy"]].to_numpy().tolist()
    assert found == truth, (guided.front_memory, full.front_memory)
    assert guided.extra["evaluations"] < 27
    merged = full.table.set_index("key")
    for _, row in guided.table.iterrows():  # the same configuration gives the same numbers either way
        assert merged.loc[row["key"], "accuracy"] == row["accuracy"]


@pytest.mark.slow
def test_the_chosen_checkpoint_reloads_to_the_accuracy_the_search_reported(tmp_path):
    ckpt = sample()
    space = {**reduced_space(), "weight_bits": (8, 2)}
    result = search(ckpt, "digits", budget={"memory_kib": 45}, space=space, limit=LIMIT, progress=False)
    assert result.chosen is not None and result.chosen["memory_kib"] <= 45
    saved = result.save_checkpoint(load_checkpoint(ckpt), tmp_path / "chosen")
    model = load_checkpoint(saved)
    bits = {name: weight_bits(m) for name, m in weight_layers(model)}
    assert bits == dict(result.candidate.weights)
    assert model.qnoise_checkpoint["metrics"]["search_accuracy"] == pytest.approx(float(result.chosen["accuracy"]))
    df = analyze(saved, "digits", limit=LIMIT, reference="none")
    acc = df[(df.layer == OUTPUT) & (df.metric == "accuracy") & (df.t == df.timesteps)].value.iloc[0]
    assert acc == pytest.approx(float(result.chosen["accuracy"]))
    mem = df[(df.layer == OUTPUT) & (df.metric == "memory_bits")].value.iloc[0]
    assert mem == pytest.approx(float(result.chosen["memory_bits"]))
    from qnoise.search.result import candidate_of

    assert candidate_of(result.chosen) == result.candidate  # the Budget page rebuilds it from the table's row
    layers = result.layers()
    assert set(layers.layer) == {"act1", "act2", "act3", "readout"}
    assert layers.memory_bits.sum() == pytest.approx(float(result.chosen["memory_bits"]))


def test_a_resumed_search_evaluates_nothing_again(tmp_path, monkeypatch):
    ckpt = sample()
    space = {**reduced_space(), "weight_bits": (8, 2), "fixed": {"readout.body.0": 8, "conv1.body.0": 8}}
    first = search(ckpt, "digits", space=space, limit=16, out=tmp_path / "run", progress=False)
    calls = []
    original = Evaluator.__call__
    monkeypatch.setattr(Evaluator, "__call__", lambda self, c, s=False: calls.append(c) or original(self, c, s))
    again = search(ckpt, "digits", space=space, limit=16, out=tmp_path / "run", progress=False)
    assert calls == [] and again.loaded == first.extra["evaluations"]
    pd.testing.assert_frame_equal(again.table, first.table)
    with pytest.raises(ValueError, match="different"):
        search(ckpt, "digits", space=space, limit=17, out=tmp_path / "run", progress=False)


@pytest.mark.slow
def test_parallel_evaluation_matches_serial(tmp_path):
    ckpt = sample()
    space = {**reduced_space(), "weight_bits": (8, 2), "fixed": {"readout.body.0": 8, "conv1.body.0": 8}}
    serial = search(ckpt, "digits", space=space, limit=16, strategy="exhaustive", progress=False)
    parallel = search(ckpt, "digits", space=space, limit=16, strategy="exhaustive", workers=2, out=tmp_path / "p",
                      progress=False)
    pd.testing.assert_frame_equal(serial.table.drop(columns="on_path"), parallel.table.drop(columns="on_path"))


def test_cli_search_writes_tables_and_the_chosen_checkpoint(tmp_path, capsys):
    ckpt = sample()
    assert cli(["search", "--checkpoint", str(ckpt), "--dataset", "digits", "--limit", "16", "--weight-bits", "8,2",
                "--state-bits", "32", "--fixed", "readout.body.0=8", "--fixed", "conv1.body.0=8",
                "--memory-kib", "60", "--out", str(tmp_path / "run"), "--save-checkpoint", str(tmp_path / "ckpt")]) == 0
    out = capsys.readouterr().out
    assert "chosen for memory <= 60 KiB" in out
    for name in ("evaluations", "front_memory", "front_energy", "chosen_layers"):
        assert (tmp_path / "run" / f"{name}.parquet").is_file()
    assert load_checkpoint(tmp_path / "ckpt").qnoise_checkpoint["search"]["budget"] == {"memory_kib": 60.0}
    with pytest.raises(SystemExit):  # refused while parsing, before any work
        cli(["search", "--checkpoint", str(ckpt), "--out", str(tmp_path / "x"), "--weight-bits", "4,4"])
