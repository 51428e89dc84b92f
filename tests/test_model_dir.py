"""`--model-dir DIR`: the Hugging Face folder Skywork/Matrix-Game-2.0 as one argument.

A fake folder of empty placeholder files stands in for the download: the choice of files per mg2
preset, the explicit flags winning over the folder, and the one-line errors (missing folder, missing
file, a preset that is not mg2)."""

import os

import pytest

from app.cli import main
from engine.config import (
    MG2_CLIP_FILE,
    MG2_DIT_FILES,
    MG2_VAE_FILE,
    load_preset,
    model_dir_files,
    with_weights,
)

DIT = {
    "mg2-universal": "base_distilled_model/base_distill.safetensors",
    "mg2-gta-drive": "gta_distilled_model/gta_keyboard2dim.safetensors",
    "mg2-templerun": "templerun_distilled_model/templerun_7dim_onlykey.safetensors",
}
VAE = "Wan2.1_VAE.pth"
CLIP = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"


def fake_download(root, skip=()):
    """The HF repo's weight files as empty placeholders (plus the tokenizer folder), minus `skip`."""
    for name in [*DIT.values(), VAE, CLIP, "xlm-roberta-large/tokenizer.json"]:
        if name in skip:
            continue
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return root


def test_file_names_are_the_official_ones():
    # the names in the reference (section 11), spelled out here so a typo in engine.config shows
    assert set(MG2_DIT_FILES.values()) == set(DIT.values())
    assert (MG2_VAE_FILE, MG2_CLIP_FILE) == (VAE, CLIP)


@pytest.mark.parametrize("name", list(DIT))
def test_each_mg2_preset_picks_its_dit_and_the_shared_vae_and_clip(tmp_path, name):
    folder = fake_download(tmp_path / "Matrix-Game-2.0")
    preset = with_weights(load_preset(name), model_dir=str(folder))
    assert preset.checkpoint == str(folder / DIT[name])
    assert preset.vae.checkpoint == str(folder / VAE)
    assert preset.image_encoder.checkpoint == str(folder / CLIP)


def test_a_renamed_copy_of_an_mg2_preset_qualifies(tmp_path):
    copy = tmp_path / "my-drive.yaml"
    copy.write_text("base: mg2-gta-drive\nfps: 10.0\n")
    folder = fake_download(tmp_path / "hf")
    preset = with_weights(load_preset(str(copy)), model_dir=str(folder))
    assert preset.checkpoint == str(folder / DIT["mg2-gta-drive"])


def test_a_file_given_on_its_own_wins_and_need_not_be_in_the_folder(tmp_path):
    folder = fake_download(tmp_path / "hf", skip=(DIT["mg2-universal"],))
    mine = tmp_path / "finetuned.safetensors"
    mine.write_bytes(b"")
    preset = with_weights(load_preset("mg2-universal"), str(mine), model_dir=str(folder))
    assert preset.checkpoint == str(mine)
    assert preset.vae.checkpoint == str(folder / VAE)


def test_missing_folder_is_one_line(tmp_path):
    with pytest.raises(ValueError) as e:
        with_weights(load_preset("mg2-universal"), model_dir=str(tmp_path / "nope"))
    message = str(e.value)
    assert "\n" not in message and "folder not found" in message
    assert all(part in message for part in ("Skywork/Matrix-Game-2.0", DIT["mg2-universal"], VAE, CLIP))


@pytest.mark.parametrize("missing", [DIT["mg2-templerun"], VAE, CLIP])
def test_missing_file_is_named_in_one_line(tmp_path, missing):
    folder = fake_download(tmp_path / "hf", skip=(missing,))
    with pytest.raises(ValueError) as e:
        model_dir_files(load_preset("mg2-templerun"), str(folder))
    message = str(e.value)
    assert "\n" not in message and f"{missing} is missing" in message
    assert all(part in message for part in (DIT["mg2-templerun"], VAE, CLIP))


@pytest.mark.parametrize("name", ["tiny", "doom"])
def test_a_preset_that_is_not_mg2_is_refused_in_one_line(tmp_path, name):
    folder = fake_download(tmp_path / "hf")
    with pytest.raises(ValueError) as e:
        with_weights(load_preset(name), model_dir=str(folder))
    message = str(e.value)
    assert "\n" not in message and f"preset {name} is not one" in message and "mg2-universal" in message


def test_cli_missing_file_is_one_line_on_stderr(capsys, tmp_path):
    folder = fake_download(tmp_path / "hf", skip=(CLIP,))
    code = main(
        ["--headless", "--preset", "mg2-universal", "--model-dir", str(folder), "--out", str(tmp_path / "o")]
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("worldplayer: error: --model-dir") and f"{CLIP} is missing" in err[0]
    assert not os.path.exists(tmp_path / "o")  # refused before the out folder is claimed
