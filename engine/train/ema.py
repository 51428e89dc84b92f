"""Exponential moving average of model weights (fp32 shadow copy)."""

from __future__ import annotations

import torch


class EMA:
    """shadow = decay * shadow + (1 - decay) * param; a plain copy while step < start."""

    def __init__(self, model: torch.nn.Module, decay: float, start: int = 0):
        self.decay, self.start = decay, start
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = 0.0 if step < self.start else self.decay
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if v.dtype.is_floating_point:
                s.mul_(d).add_(v.detach().float(), alpha=1 - d)
            else:
                s.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise ValueError(f"EMA state lacks {sorted(missing)[:3]}")
        self.shadow = {k: state[k].float().clone() for k in self.shadow}

    def copy_to(self, model: torch.nn.Module) -> torch.nn.Module:
        """Load the EMA weights into `model` (cast to its dtypes) and return it."""
        model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in self.shadow.items()})
        return model
