"""Directions the refusal direction is kept orthogonal to: helpfulness orthogonalization and sacred directions.

- The "unhelpfulness" direction of a layer is the mean residual of plain text that asks for nothing
  (``abliteration.general_text_prompts``) minus the mean residual of the harmless requests. A refusal direction
  that leans along it would, when removed, also remove how the model goes about answering a request (its
  verbosity, its padding); with ``abliteration.helpfulness_orthogonalization`` it is made orthogonal to it.
- Sacred directions (``abliteration.sacred_directions`` = N) are the top N components of a contrastive PCA of
  capability prompts (``abliteration.capability_prompts``, exam-style questions) against the same plain text:
  what a question that needs knowledge or reasoning adds to the residual stream. The refusal direction is made
  orthogonal to all of them, so the ablation leaves them alone.

Together they form one orthonormal basis per layer (the *protected* basis, [layers, k, hidden]). It is applied
when a trial is applied, to the direction each layer is edited with, against that same layer's basis: the edit
(I - w d d^T) then leaves every vector of the layer's protected subspace exactly as it was, whichever layer the
trial's direction came from.
"""

from __future__ import annotations

from typing import Any

import torch

from heretic_tui.core.abliteration.directions import contrastive_spectrum, mean_differences
from heretic_tui.core.abliteration.prompts import Prompt, load_prompt_records

FULLY_PROTECTED = 1e-4
"""The norm below which what a unit direction keeps outside the protected basis counts as nothing."""

GENERAL_TEXT_SETTING = "general_text_prompts"
CAPABILITY_SETTING = "capability_prompts"


def reference_sources(settings: Any) -> dict[str, str]:
    """The prompt sources the protection of these settings needs (none when it is off), by setting name.

    ``settings`` is the whole :class:`~heretic_tui.core.settings.Settings`."""
    abliteration = settings.abliteration
    sources = {}
    if abliteration.helpfulness_orthogonalization or abliteration.sacred_directions > 0:
        sources[GENERAL_TEXT_SETTING] = abliteration.general_text_prompts
    if abliteration.sacred_directions > 0:
        sources[CAPABILITY_SETTING] = abliteration.capability_prompts
    return sources


def load_reference_prompts(settings: Any) -> dict[str, list[Prompt]]:
    """The prompts of :func:`reference_sources`, at most ``prompts.max_direction_prompts`` of each (raises
    UserInputError naming the setting for a source that cannot be read)."""
    return {
        name: load_prompt_records(source, settings.prompts.max_direction_prompts,
                                  origin=f"abliteration.{name} ({source})")
        for name, source in reference_sources(settings).items()
    }


def protected_basis(harmless: torch.Tensor, general_text: torch.Tensor | None, capability: torch.Tensor | None,
                    helpfulness: bool, sacred_count: int) -> torch.Tensor | None:
    """The orthonormal protected basis per layer ([layers, k, hidden]) from residuals [prompts, layers, hidden];
    None when nothing is protected."""
    parts = []
    if helpfulness:
        if general_text is None:
            raise ValueError("helpfulness orthogonalization needs the general text residuals")
        parts.append(mean_differences(general_text, harmless).unsqueeze(1))
    if sacred_count > 0:
        if general_text is None or capability is None:
            raise ValueError("sacred directions need the capability and the general text residuals")
        # Only components capability prompts vary along more than plain text does (a positive eigenvalue)
        # encode something of theirs; the rest would protect noise.
        values, vectors = contrastive_spectrum(capability, general_text, sacred_count)
        parts.append(vectors * (values > 0).unsqueeze(-1))
    if not parts:
        return None
    stacked = torch.cat([part.float() for part in parts], dim=1)
    basis, triangle = torch.linalg.qr(stacked.transpose(1, 2))
    # A vector that adds nothing new (its diagonal entry is about zero) gives no basis vector.
    scale = stacked.norm(dim=-1).amax(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    independent = triangle.diagonal(dim1=1, dim2=2).abs() > 1e-6 * scale
    return (basis * independent.unsqueeze(1)).transpose(1, 2).contiguous()


def protect(directions: torch.Tensor, basis: torch.Tensor | None) -> torch.Tensor:
    """Each layer's unit direction ([layers, hidden]) without its components in that layer's protected basis,
    renormalized. A direction that lies entirely in the protected subspace becomes zero: nothing is ablated there."""
    if basis is None:
        return directions
    basis = basis.to(directions.device, directions.dtype)
    coefficients = torch.einsum("lkh,lh->lk", basis, directions)
    remaining = directions - torch.einsum("lk,lkh->lh", coefficients, basis)
    norms = remaining.norm(dim=-1, keepdim=True)
    # What is left of a (unit) direction the basis all but contains is rounding noise, not a direction.
    return torch.where(norms > FULLY_PROTECTED, remaining / norms.clamp_min(FULLY_PROTECTED),
                       torch.zeros_like(remaining))
