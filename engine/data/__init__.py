"""Gameplay data: a scripted explorer, recording to shards, and training clips. The worlds it records
(ViZDoom, the synthetic test world) live in `engine.worlds`.

- `explorer.Explorer(seed)`: human-like scripted actions from the depth buffer.
- `record`: `python -m engine.data.record --out DIR ...` writes shards + index.json.
- `shards`: the on-disk format (write_shard, write_index, read_index, load_shard).
- `loader`: `ClipDataset` (pixel or cached-latent clips with per-frame actions) and `cache_latents`.
See docs/data.md. Nothing here imports vizdoom until a ViZDoom world is built.
"""
