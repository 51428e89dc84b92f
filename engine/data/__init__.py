"""Gameplay data: real Freedoom as a World, a scripted explorer, recording to shards, and training clips.

- `vizdoom_world.VizDoomWorld(preset)`: ViZDoom behind the World protocol (needs the `vizdoom` package).
- `synthetic_world.SyntheticWorld`: a tiny scrolling-texture world for tests.
- `explorer.Explorer(seed)`: human-like scripted actions from the depth buffer.
- `record`: `python -m engine.data.record --out DIR ...` writes shards + index.json.
- `shards`: the on-disk format (write_shard, write_index, read_index, load_shard).
- `loader`: `ClipDataset` (pixel or cached-latent clips with per-frame actions) and `cache_latents`.
See docs/data.md. Nothing here imports vizdoom until a ViZDoom world is built.
"""
