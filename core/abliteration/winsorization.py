"""Clamping residual outliers before directions are computed (``abliteration.winsorize_quantile``).

Large models carry a few "massive activation" dimensions whose values are orders of magnitude above the rest
(Sun et al. 2024). They barely differ between harmful and harmless prompts, yet a difference of means or a
covariance is dominated by their noise. Each residual vector's components are clamped to the given quantile of its
own absolute values, so the clamp adapts to every prompt and layer and needs no scale chosen per model.
"""

from __future__ import annotations

import math

import torch


def winsorize(residuals: torch.Tensor, quantile: float) -> torch.Tensor:
    """Residuals [..., hidden] with every component clamped to +-(the quantile of that vector's |components|).

    A quantile of 1 (or one that keeps every component) returns the residuals unchanged.
    """
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"The winsorization quantile must be in (0, 1], not {quantile}.")
    hidden = residuals.shape[-1]
    rank = max(1, math.ceil(quantile * hidden))
    if quantile >= 1.0 or rank >= hidden:
        return residuals
    magnitudes = residuals.abs().float()
    bound = torch.kthvalue(magnitudes, rank, dim=-1, keepdim=True).values.to(residuals.dtype)
    return torch.maximum(torch.minimum(residuals, bound), -bound)
