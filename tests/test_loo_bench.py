"""The leave-one-case-out choice of benchmarks/loo_bench.py on a synthetic matrix."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
loo_bench = pytest.importorskip("loo_bench")


def _mat(deltas, serv=0.2):
    """case -> row as loo_bench.matrix builds it, from case -> {candidate: R-free − servalcat's}."""
    return {c: {"servalcat": serv, "metric": "R-free", "delta": dict(d),
                "kickref": {k: None if v is None else serv + v for k, v in d.items()}}
            for c, d in deltas.items()}


def test_choose_mean_and_tie_to_default():
    mat = _mat({"a": {"default": 0.0, "x": -0.004}, "b": {"default": 0.0, "x": 0.002}})
    chosen, scores, used = loo_bench.choose(["a", "b"], ["default", "x"], mat)
    assert chosen == "x" and scores["x"] == pytest.approx(-0.001) and used == ["a", "b"]
    mat = _mat({"a": {"default": 0.0, "x": -0.00005}})        # within the 1e-4 tie: default
    assert loo_bench.choose(["a"], ["default", "x"], mat)[0] == "default"
    # weights: b (weight 9) outweighs a
    chosen, scores, _ = loo_bench.choose(["a", "b"], ["default", "x"],
                                         _mat({"a": {"default": 0.0, "x": -0.004},
                                               "b": {"default": 0.0, "x": 0.002}}), {"a": 1, "b": 9})
    assert chosen == "default" and scores["x"] == pytest.approx(0.0014)


def test_loo_never_trains_on_the_held_out_case():
    # x is much better on c alone; held out c, the others choose the default and c is judged by it
    mat = _mat({"a": {"default": -0.001, "x": 0.001}, "b": {"default": -0.001, "x": 0.001},
                "c": {"default": 0.002, "x": -0.05}})
    rows = {r["held_out"]: r for r in loo_bench.loo(["a", "b", "c"], ["default", "x"], mat)}
    assert rows["c"]["chosen"] == "default" and rows["c"]["criterion_met"] is False
    assert rows["c"]["minus_servalcat"] == pytest.approx(0.002)
    assert rows["a"]["chosen"] == "x" and rows["a"]["minus_default"] == pytest.approx(0.002)
    alt = {r["held_out"]: r for r in loo_bench.loo(["a", "b", "c"], ["default", "x"], mat, exclude=("c",))}
    assert alt["a"]["chosen"] == "default" and alt["a"]["train_cases"] == ["b"]
