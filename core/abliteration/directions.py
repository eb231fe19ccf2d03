"""Refusal directions: per layer, the normalized difference between mean harmful and mean harmless residuals."""

from __future__ import annotations

import math

import torch


def compute_directions(harmful: torch.Tensor, harmless: torch.Tensor, orthogonalize: bool = False) -> torch.Tensor:
    """One unit direction per layer from residuals of shape [prompts, layers, hidden]; returns [layers, hidden].

    With ``orthogonalize`` the component along the harmless mean is removed first, so the ablation leaves the
    model's ordinary activity direction untouched (it only shifts what separates harmful from harmless).
    """
    harmful_mean = harmful.float().mean(dim=0)
    harmless_mean = harmless.float().mean(dim=0)
    directions = harmful_mean - harmless_mean
    if orthogonalize:
        harmless_unit = torch.nn.functional.normalize(harmless_mean, dim=-1)
        directions = directions - (directions * harmless_unit).sum(dim=-1, keepdim=True) * harmless_unit
    return torch.nn.functional.normalize(directions, dim=-1)


def separation(harmful: torch.Tensor, harmless: torch.Tensor) -> list[float]:
    """Per layer, how far apart the two means are (the raw difference's norm): where refusal is most visible."""
    return (harmful.float().mean(dim=0) - harmless.float().mean(dim=0)).norm(dim=-1).tolist()


def interpolate_direction(directions: torch.Tensor, index: float) -> torch.Tensor:
    """The direction at a fractional layer index, linearly between the two neighbouring layers, renormalized."""
    layers = directions.shape[0]
    index = min(max(index, 0.0), layers - 1)
    lower = int(math.floor(index))
    upper = min(lower + 1, layers - 1)
    fraction = index - lower
    mixed = directions[lower] * (1.0 - fraction) + directions[upper] * fraction
    return torch.nn.functional.normalize(mixed, dim=-1)
