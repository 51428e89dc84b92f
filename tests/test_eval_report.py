"""benchmarks/eval_doom.py prints "n/a", not "nan%", for a category without blocks."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "eval_doom.py"


def test_empty_category_prints_n_a():
    spec = importlib.util.spec_from_file_location("eval_doom", SCRIPT)
    eval_doom = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(eval_doom)
    assert eval_doom.pct(float("nan")) == "n/a" and eval_doom.pct(float("nan"), 0) == "n/a"
    assert eval_doom.pct(0.537) == "53.70%" and eval_doom.pct(1.0, 0) == "100%"
