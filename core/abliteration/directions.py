"""Refusal directions per layer from harmful and harmless residuals: difference of means, contrastive PCA, and
the ensemble of those with a linear probe (:mod:`~heretic_tui.core.abliteration.probing`); and how well a
direction separates residuals it was not computed from.

Every function takes residuals of shape [prompts, layers, hidden] and works on the device the residuals are on,
so a caller that moves them to the GPU gets the linear algebra there. Directions come back as unit vectors, one
per layer ([layers, hidden]); a direction's sign always points from harmless towards harmful (a positive dot
product with the difference of means), so every method's direction removes the same thing.
"""

from __future__ import annotations

import math

import torch


def mean_differences(harmful: torch.Tensor, harmless: torch.Tensor) -> torch.Tensor:
    """Per layer, mean harmful residual minus mean harmless residual (not normalized): [layers, hidden]."""
    return harmful.float().mean(dim=0) - harmless.float().mean(dim=0)


def remove_component(directions: torch.Tensor, along: torch.Tensor) -> torch.Tensor:
    """Each layer's direction without its component along that layer's ``along`` vector, renormalized."""
    unit = torch.nn.functional.normalize(along.float(), dim=-1)
    removed = directions - (directions * unit).sum(dim=-1, keepdim=True) * unit
    return torch.nn.functional.normalize(removed, dim=-1)


def compute_directions(harmful: torch.Tensor, harmless: torch.Tensor, orthogonalize: bool = False) -> torch.Tensor:
    """One unit direction per layer from residuals of shape [prompts, layers, hidden]; returns [layers, hidden].

    With ``orthogonalize`` the component along the harmless mean is removed first, so the ablation leaves the
    model's ordinary activity direction untouched (it only shifts what separates harmful from harmless).
    """
    directions = mean_differences(harmful, harmless)
    if orthogonalize:
        return remove_component(directions, harmless.float().mean(dim=0))
    return torch.nn.functional.normalize(directions, dim=-1)


def align_signs(directions: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Flip each layer's direction (or each of its several directions, [layers, count, hidden]) whose dot product
    with that layer's reference is negative."""
    if directions.dim() == 3:
        signs = torch.sign((directions * reference.unsqueeze(1)).sum(dim=-1, keepdim=True))
    else:
        signs = torch.sign((directions * reference).sum(dim=-1, keepdim=True))
    return directions * torch.where(signs == 0, torch.ones_like(signs), signs)


def contrastive_components(target: torch.Tensor, baseline: torch.Tensor, count: int = 1) -> torch.Tensor:
    """Per layer, the top ``count`` eigenvectors of M = E[(t - mean b)(t - mean b)^T] - Cov(b): [layers, count, hidden]
    (see :func:`contrastive_spectrum`)."""
    return contrastive_spectrum(target, baseline, count)[1]


def contrastive_spectrum(target: torch.Tensor, baseline: torch.Tensor,
                         count: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Per layer, the top ``count`` eigenvalues ([layers, count], largest first) and unit eigenvectors ([layers,
    count, hidden]) of M = E[(t - mean b)(t - mean b)^T] - Cov(b).

    M is the second moment of the target residuals about the baseline mean less the baseline covariance: it holds
    the mean difference (as its outer product) plus whatever varies more in the target than in the baseline, and
    cancels what both vary in alike (prompt length, topic). The eigenvectors of M with non-zero eigenvalues lie in
    the span of the centred residuals, so each layer is solved in that span (at most prompts-many dimensions):
    exact, and cheap for models far wider than the prompt count.
    """
    target = target.float()
    baseline = baseline.float()
    baseline_mean = baseline.mean(dim=0, keepdim=True)
    targets = (target - baseline_mean) / math.sqrt(target.shape[0])
    baselines = (baseline - baseline_mean) / math.sqrt(max(baseline.shape[0] - 1, 1))
    hidden = target.shape[-1]
    layers, spectra = [], []
    for layer in range(target.shape[1]):
        rows_target, rows_baseline = targets[:, layer], baselines[:, layer]
        if rows_target.shape[0] + rows_baseline.shape[0] >= hidden:
            moment = rows_target.T @ rows_target - rows_baseline.T @ rows_baseline
            values, vectors = torch.linalg.eigh(moment)
            top = vectors[:, -count:].flip(-1).T
        else:
            basis, _ = torch.linalg.qr(torch.cat([rows_target, rows_baseline]).T)
            projected_target, projected_baseline = rows_target @ basis, rows_baseline @ basis
            small = projected_target.T @ projected_target - projected_baseline.T @ projected_baseline
            values, vectors = torch.linalg.eigh((small + small.T) / 2)
            top = (basis @ vectors[:, -count:]).flip(-1).T
        layers.append(torch.nn.functional.normalize(top, dim=-1))
        spectra.append(values[-count:].flip(-1))
    return torch.stack(spectra), torch.stack(layers)


def pca_directions(harmful: torch.Tensor, harmless: torch.Tensor) -> torch.Tensor:
    """Contrastive PCA refusal directions: each layer's top component of harmful against harmless, signed like the
    difference of means."""
    components = contrastive_components(harmful, harmless, 1)[:, 0]
    return align_signs(components, mean_differences(harmful, harmless))


def ensemble_directions(parts: list[torch.Tensor]) -> torch.Tensor:
    """The normalized sum of several methods' unit directions (all signed alike, see the module docstring)."""
    return torch.nn.functional.normalize(torch.stack([part.float() for part in parts]).sum(dim=0), dim=-1)


def separation(harmful: torch.Tensor, harmless: torch.Tensor) -> list[float]:
    """Per layer, how far apart the two means are (the raw difference's norm): where refusal is most visible."""
    return mean_differences(harmful, harmless).norm(dim=-1).tolist()


def separation_auc(directions: torch.Tensor, harmful: torch.Tensor, harmless: torch.Tensor) -> list[float]:
    """Per layer, the probability that a harmful residual projects further along the direction than a harmless one
    (the ROC AUC of the projection; ties count half): 1 separates perfectly, 0.5 not at all, below 0.5 the sign is
    wrong. Meant for held-out residuals, which the direction was not computed from."""
    directions = directions.float().to(harmful.device)
    harmful_scores = torch.einsum("nlh,lh->ln", harmful.float(), directions)
    harmless_scores = torch.einsum("nlh,lh->ln", harmless.float(), directions.to(harmless.device))
    difference = harmful_scores.unsqueeze(-1) - harmless_scores.to(harmful.device).unsqueeze(1)
    wins = (difference > 0).float() + 0.5 * (difference == 0).float()
    return wins.mean(dim=(1, 2)).tolist()


def interpolate_direction(directions: torch.Tensor, index: float) -> torch.Tensor:
    """The direction at a fractional layer index, linearly between the two neighbouring layers, renormalized."""
    layers = directions.shape[0]
    index = min(max(index, 0.0), layers - 1)
    lower = int(math.floor(index))
    upper = min(lower + 1, layers - 1)
    fraction = index - lower
    mixed = directions[lower] * (1.0 - fraction) + directions[upper] * fraction
    return torch.nn.functional.normalize(mixed, dim=-1)
