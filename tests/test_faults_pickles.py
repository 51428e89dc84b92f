"""Training state and benchmark files are read without running pickled code (issue 20, item 8)."""

from __future__ import annotations

import pytest
import torch

from engine.train.ckpt import load_train_state, save_train_state


class Planted:
    """Unpickling this writes a file: what a malicious state.pt would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_training_state_round_trips_with_the_numpy_rng(tmp_path):
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))])
    opt.step()
    save_train_state(tmp_path, {"optimizer": opt.state_dict(), "sampler": [torch.get_rng_state()], "step": 7})
    state = load_train_state(tmp_path)
    assert state["step"] == 7 and state["rng"]["numpy"][0] == "MT19937"


def test_a_code_running_state_pt_is_refused(tmp_path):
    marker = tmp_path / "pwned.txt"
    torch.save({"step": 1, "evil": Planted(marker)}, tmp_path / "state.pt")
    with pytest.raises(ValueError, match="refusing training state"):
        load_train_state(tmp_path)
    assert not marker.exists()


def test_no_unsafe_torch_load_is_left():
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    for rel in ("engine/train/ckpt.py", "engine/var/train.py", "benchmarks/bench_var.py"):
        text = (repo / rel).read_text()
        assert "weights_only=False" not in text, rel
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, (rel, line)
