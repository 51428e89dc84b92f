"""What the world-model pipeline needs from a video VAE, so the Wan VAE and our tiny VAE are interchangeable.

Layout at this boundary: pixels [B, T, 3, H, W] in [-1, 1]; latents [B, T, C, h, w], already
normalised (the model's latent space), h = H / spatial, w = W / spatial. Video frames and latent
frames are related causally: T_video = 1 + temporal * (T_latent - 1).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class ConditionStream(Protocol):
    """Block-by-block encode of the conditioning video [image, gray, gray, ...] (see VideoVAE)."""

    def next(self, num_latents: int) -> torch.Tensor:
        """The next `num_latents` latent frames of the conditioning video: [B, n, C, h, w]."""
        ...


class VideoVAE(Protocol):
    z_dim: int
    spatial: int  # 8
    temporal: int  # 4

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """video [B, 1 + 4k, 3, H, W] in [-1, 1] -> normalised latents [B, 1 + k, C, h, w]."""
        ...

    def condition_stream(self, image: torch.Tensor) -> ConditionStream:
        """Stream of latents of [image, 4(N-1) gray (zero) frames] for any N, encoded block by block.

        image: [B, 3, H, W] in [-1, 1]. Equal (allclose) to `encode` of the whole video.
        """
        ...

    def new_decode_cache(self) -> Any:
        """An empty streaming-decoder cache (typed object owned by the VAE)."""
        ...

    def decode_stream(self, z: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        """Decode the next latent frames. z [B, n, C, h, w] -> (video [B, T', 3, H, W] in [-1, 1], cache).

        The first latent of a session gives 1 frame, every later latent 4.
        """
        ...
