"""A small Freedoom 2 map classifier whose penultimate features give a Frechet distance (FD) for VAR samples.

Pixels: img [B, 3, 144, 256] in [-1, 1]; features [B, 128]; logits [B, 20]. It is trained on real frames
(data/var_frames/train) only, as an offline stand-in for Inception features.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class FrameClassifier(nn.Module):
    def __init__(self, num_classes: int = 20, feat: int = 128):
        super().__init__()
        chans = [3, 32, 64, 96, feat]
        layers: list[nn.Module] = [nn.AvgPool2d(2)]  # 144x256 -> 72x128
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(8, cout), nn.SiLU()]
        self.net = nn.Sequential(*layers)  # -> [B, feat, 5, 8]
        self.fc = nn.Linear(feat, num_classes)

    def features(self, img: torch.Tensor) -> torch.Tensor:
        return self.net(img).mean((2, 3))  # [B, feat]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(img))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature sets a [N, D] and b [M, D]."""
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@torch.no_grad()
def extract(model: FrameClassifier, imgs: torch.Tensor, bs: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """imgs [N, 3, H, W] in [-1, 1] -> (features [N, D], predicted class [N])."""
    feats, preds = [], []
    for i in range(0, len(imgs), bs):
        f = model.features(imgs[i : i + bs])
        feats.append(f.numpy())
        preds.append(model.fc(f).argmax(-1).numpy())
    return np.concatenate(feats), np.concatenate(preds)


def classifier_loss(model: FrameClassifier, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y, label_smoothing=0.1)
