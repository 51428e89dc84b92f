"""Without the `data` extra (no vizdoom), the presets and flags that need it say so in one line."""

import sys

import pytest

from app.cli import main


@pytest.fixture
def no_vizdoom(monkeypatch):
    """`import vizdoom` fails as it does where the extra is not installed."""
    for name in [m for m in sys.modules if m == "vizdoom" or m.startswith("vizdoom.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "vizdoom", None)  # None in sys.modules -> ModuleNotFoundError


@pytest.mark.parametrize(
    "argv",
    [
        ["--headless", "--preset", "vizdoom", "--frames", "2"],
        ["--headless", "--preset", "tiny", "--compare", "--frames", "2"],
    ],
    ids=["vizdoom", "compare"],
)
def test_missing_data_extra_is_one_line(capsys, tmp_path, no_vizdoom, argv):
    code = main(argv + ["--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("worldplayer: error: ") and 'pip install -e ".[data]"' in lines[0]
    assert not (tmp_path / "o").exists()  # refused before the output folder is claimed


def test_replaying_a_vizdoom_recording_without_the_extra(capsys, tmp_path, no_vizdoom):
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "meta.json").write_text('{"preset": "vizdoom", "device": "cpu", "dtype": "bf16"}')
    (rec / "blocks.jsonl").write_text("")
    code = main(["--replay", str(rec), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and 'pip install -e ".[data]"' in err, err
