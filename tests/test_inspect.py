"""engine.inspect: parameter counts and official key names/shapes of the full-size presets (meta device)."""

from __future__ import annotations

from engine.inspect import main, parameter_table


def test_universal_count_and_keys():
    rows, total = parameter_table("mg2-universal")
    assert abs(total - 1.619e9) < 0.001e9
    shapes = dict(rows)
    assert shapes["patch_embedding.weight"] == (1536, 36, 1, 2, 2)
    assert shapes["time_projection.1.weight"] == (9216, 1536)
    assert shapes["blocks.29.modulation"] == (1, 6, 1536)
    assert shapes["blocks.0.self_attn.norm_q.weight"] == (1536,)
    assert shapes["blocks.3.cross_attn.k.weight"] == (1536, 1536)
    assert shapes["blocks.3.norm3.weight"] == (1536,)
    assert shapes["blocks.7.ffn.0.weight"] == (8960, 1536)
    assert shapes["blocks.14.action_model.mouse_mlp.0.weight"] == (1024, 1560)
    assert shapes["blocks.14.action_model.t_qkv.weight"] == (3072, 1024)
    assert shapes["blocks.0.action_model.keyboard_attn_kv.weight"] == (2048, 1536)
    assert shapes["blocks.0.action_model.img_attn_q_norm.weight"] == (64,)
    assert shapes["head.modulation"] == (1, 2, 1536)
    assert shapes["head.head.weight"] == (64, 1536)
    assert shapes["img_emb.proj.3.weight"] == (1536, 1280)
    assert not any(k.startswith("blocks.15.action_model") for k in shapes)
    assert not any("norm1" in k or "norm2" in k for k in shapes)


def test_templerun_has_no_mouse():
    rows, total = parameter_table("mg2-templerun")
    assert abs(total - 1.509e9) < 0.001e9
    shapes = dict(rows)
    assert shapes["blocks.0.action_model.keyboard_embed.0.weight"] == (128, 7)
    assert not any("mouse_mlp" in k or "t_qkv" in k or "proj_mouse" in k or "img_attn" in k for k in shapes)


def test_gta_keyboard_two_keys():
    shapes = dict(parameter_table("mg2-gta-drive")[0])
    assert shapes["blocks.0.action_model.keyboard_embed.0.weight"] == (128, 2)


def test_cli_prints_total(capsys):
    assert main(["mg2-universal"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].endswith("1,619,242,304 parameters (1.619 B)")
    assert any(line.startswith("blocks.0.self_attn.q.weight") for line in out)
