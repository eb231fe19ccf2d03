"""Supervised probing: a logistic-regression classifier per layer whose weight is a refusal direction.

Hand-written in torch rather than taken from scikit-learn because every layer's probe is fitted at once, on the
device the residuals are on (a GPU for large models), by one L-BFGS run over the layers' summed losses (they are
independent, so the joint minimum is each layer's own); scikit-learn would fit the layers one by one on the CPU.

Features are centred per layer and divided by one scale per layer (the RMS distance from the centre), never per
dimension, so the probe's weight stays a direction in the residual space the ablation edits. The two classes weigh
the same whatever their prompt counts, and an L2 penalty keeps the weights finite on separable data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

REGULARIZATION = 1e-2
"""L2 penalty on the weights of features scaled to unit RMS: enough to keep separable data finite, small enough
that the probe still follows the data rather than the penalty."""

ITERATIONS = 200
"""L-BFGS iterations: convex problems of this size converge well within them."""


@dataclass
class LinearProbes:
    """One fitted probe per layer: logit = ((x - center) / scale) . weight + bias, positive for harmful."""

    weight: torch.Tensor
    """[layers, hidden]"""
    bias: torch.Tensor
    """[layers]"""
    center: torch.Tensor
    """[layers, hidden]"""
    scale: torch.Tensor
    """[layers]"""

    def directions(self) -> torch.Tensor:
        """The unit weight of every layer's probe: the direction its decision depends on, pointing to harmful."""
        return torch.nn.functional.normalize(self.weight, dim=-1)

    def logits(self, residuals: torch.Tensor) -> torch.Tensor:
        """Per layer and prompt, the probe's logit ([layers, prompts]) for residuals [prompts, layers, hidden]."""
        features = (residuals.float().to(self.weight.device) - self.center) / self.scale[:, None]
        return torch.einsum("nlh,lh->ln", features, self.weight) + self.bias[:, None]

    def accuracy(self, harmful: torch.Tensor, harmless: torch.Tensor) -> list[float]:
        """Per layer, the balanced accuracy (mean of the two classes' accuracies) on the given residuals."""
        harmful_right = (self.logits(harmful) > 0).float().mean(dim=1)
        harmless_right = (self.logits(harmless) <= 0).float().mean(dim=1)
        return ((harmful_right + harmless_right) / 2).tolist()


def train_probes(harmful: torch.Tensor, harmless: torch.Tensor, regularization: float = REGULARIZATION,
                 iterations: int = ITERATIONS) -> LinearProbes:
    """Fit one class-balanced, L2-regularized logistic regression per layer on residuals [prompts, layers, hidden]."""
    residuals = torch.cat([harmful.float(), harmless.float()])
    labels = torch.cat([torch.ones(harmful.shape[0]), torch.zeros(harmless.shape[0])]).to(residuals.device)
    sample_weights = torch.cat([torch.full((harmful.shape[0],), 0.5 / harmful.shape[0]),
                                torch.full((harmless.shape[0],), 0.5 / harmless.shape[0])]).to(residuals.device)
    center = residuals.mean(dim=0)
    scale = (residuals - center).pow(2).sum(dim=-1).mean(dim=0).sqrt().clamp_min(torch.finfo(torch.float32).tiny)
    features = ((residuals - center) / scale[:, None]).transpose(0, 1).contiguous()
    layers, hidden = center.shape
    weight = torch.zeros(layers, hidden, device=residuals.device, requires_grad=True)
    bias = torch.zeros(layers, device=residuals.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=iterations, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        logits = torch.einsum("lnh,lh->ln", features, weight) + bias[:, None]
        losses = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, labels.expand_as(logits), reduction="none")
        total = (losses * sample_weights).sum() + 0.5 * regularization * weight.pow(2).sum()
        total.backward()
        return total

    with torch.enable_grad():
        optimizer.step(loss)
    return LinearProbes(weight.detach(), bias.detach(), center, scale)
