"""Gameplay data: a scripted explorer and recording to shards. The worlds it records
(ViZDoom, the synthetic test world) live in `engine.worlds`.

- `explorer.Explorer(seed)`: human-like scripted actions from the depth buffer.
- `record`: `python -m engine.data.record --out DIR ...` writes shards + index.json.
- `recording`: a worldplayer recording folder (video.mp4 + actions.jsonl + meta.json) read back as an
  episode, so `--record DIR` output is training data.
- `shards`: the on-disk format (write_shard, write_index, read_index, load_shard); the trainers read it
  through `engine.train.episodes`.
See docs/data.md. Nothing here imports vizdoom until a ViZDoom world is built.
"""
