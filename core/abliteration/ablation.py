"""Projecting a refusal direction out of every weight that writes into the residual stream, and undoing it.

For a weight W whose output lands in the residual stream (attention output projection, MLP down projection, each
MoE expert's down projection, fused 3-D expert tensors included) the ablation is W <- W - w d (d^T W), i.e.
(I - w d d^T) W, with the strength w given per layer by a kernel. Trials are reset by copying back only the
matrices a trial touched from a cache of their originals, so no trial reloads the model and a reset is exact
bit for bit.

Two ablation methods (``TrialParameters.ablation_method``):

- ``projection``: W' = (I - w d d^T) W. On a module output y = W x this is y' = y - w d (d^T y).
- ``norm_preserving`` (MPOA, Heretic's "row normalization"): the projection, then each output unit's row of W
  (W[i, :], one per hidden unit the module writes) rescaled to its original norm: W'[i, :] = s_i (W[i, :] -
  w d_i d^T W), s_i = |W[i, :]| / |W[i, :] - w d_i d^T W|. On a module output this is y' = s * (y - w d (d^T y))
  with one fixed factor s_i per output unit (per expert and output unit for fused experts), so the same edit can be
  applied as a forward hook on the module's output. The edit turns rows instead of shrinking them, which keeps
  the magnitudes the following norm layers expect. A row the projection (all but) zeroes keeps s_i = 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from heretic_tui.core.abliteration.direction_set import DirectionSet
from heretic_tui.core.abliteration.directions import interpolate_direction
from heretic_tui.core.abliteration.protection import protect
from heretic_tui.core.abliteration.methods import BOTH, MEAN, NORM_PRESERVING, PROJECTION, edited_kinds
from heretic_tui.core.models.layers import UnsupportedLayoutError, decoder_layers, text_config

ATTENTION_OUTPUT_NAMES = ("o_proj", "out_proj", "c_proj", "dense", "wo", "o")
MLP_OUTPUT_NAMES = ("down_proj", "w2", "fc2", "c_proj", "dense_4h_to_h", "wo")
ATTENTION_MARKERS = ("attn", "attention")
MLP_MARKERS = ("mlp", "moe", "feed_forward", "ffn", "experts")
EXPERT_INPUT_NAMES = ("gate_up_proj", "gate_proj", "up_proj", "w1", "w3", "router", "gate")
COMPONENTS = ("attention", "mlp")


@dataclass
class KernelParameters:
    """The per-component weight kernel over layers (all positions and distances in layer units)."""

    max_weight: float
    max_weight_position: float
    min_weight: float
    min_weight_distance: float

    def weight(self, layer: int) -> float:
        """Linear from max_weight at its position down to min_weight at min_weight_distance; zero beyond it."""
        distance = abs(layer - self.max_weight_position)
        if distance > self.min_weight_distance:
            return 0.0
        if self.min_weight_distance <= 0:
            return self.max_weight
        return self.max_weight + (distance / self.min_weight_distance) * (self.min_weight - self.max_weight)


METHOD_KEYS = ("direction_method", "ablation_method", "edited_components")
"""The flat-parameter keys of a trial's methods; a trial recorded before they existed used their defaults."""


@dataclass
class TrialParameters:
    """Everything that defines one abliteration: which direction and how strongly per component and layer, and
    the methods that make and apply the direction."""

    direction_scope: str
    direction_index: float
    kernels: dict[str, KernelParameters] = field(default_factory=dict)
    direction_method: str = MEAN
    ablation_method: str = PROJECTION
    edited_components: str = BOTH

    def to_flat(self) -> dict[str, Any]:
        flat: dict[str, Any] = {"direction_scope": self.direction_scope, "direction_index": self.direction_index}
        for key in METHOD_KEYS:
            flat[key] = getattr(self, key)
        for component, kernel in self.kernels.items():
            for name, value in vars(kernel).items():
                flat[f"{component}.{name}"] = value
        return flat

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> TrialParameters:
        kernels = {
            component: KernelParameters(
                max_weight=float(flat[f"{component}.max_weight"]),
                max_weight_position=float(flat[f"{component}.max_weight_position"]),
                min_weight=float(flat[f"{component}.min_weight"]),
                min_weight_distance=float(flat[f"{component}.min_weight_distance"]),
            )
            for component in COMPONENTS
            if f"{component}.max_weight" in flat
        }
        methods = {key: str(flat[key]) for key in METHOD_KEYS if key in flat}
        return cls(str(flat["direction_scope"]), float(flat["direction_index"]), kernels, **methods)


@dataclass
class Component:
    """One residual-writing weight: its component kind, layer, dotted name and the parameter itself.

    ``output_axis`` is the axis of length hidden_size (0 for nn.Linear weights, 1 or 2 for fused [experts, ., .]).
    """

    kind: str
    layer: int
    name: str
    parameter: nn.Parameter
    output_axis: int


def _is_quantized(parameter: torch.Tensor) -> bool:
    return not parameter.dtype.is_floating_point or type(parameter).__name__ in ("Params4bit", "Int8Params")


def find_components(model: Any) -> list[Component]:
    """Every residual-writing weight of every layer; a layer missing either kind, or an unknown fused tensor, is an
    error that names the module instead of a silent skip."""
    hidden = text_config(model).hidden_size
    layers_name, layers = decoder_layers(model)
    found: list[Component] = []
    for index, layer in enumerate(layers):
        prefix = f"{layers_name}.{index}"
        kinds: set[str] = set()
        for local_name, parameter in layer.named_parameters():
            parts = local_name.split(".")
            if parts[-1] == "bias":
                continue
            owner = parts[-2] if parts[-1] == "weight" and len(parts) >= 2 else parts[-1]
            path = ".".join(parts[:-1]).lower()
            full = f"{prefix}.{local_name}"
            if parameter.dim() == 3:
                if owner in MLP_OUTPUT_NAMES:
                    axes = [axis for axis in (1, 2) if parameter.shape[axis] == hidden]
                    if not axes:
                        raise UnsupportedLayoutError(f"Fused expert tensor {full} has no axis of the hidden size {hidden}.")
                    found.append(Component("mlp", index, full, parameter, axes[0]))
                    kinds.add("mlp")
                elif owner not in EXPERT_INPUT_NAMES:
                    raise UnsupportedLayoutError(
                        f"Unsupported fused tensor {full} with shape {tuple(parameter.shape)}: heretic-tui does not "
                        "know whether it writes to the residual stream, so it refuses to skip it silently."
                    )
                continue
            if parameter.dim() != 2 or parameter.shape[0] != hidden:
                continue
            if _is_quantized(parameter):
                raise UnsupportedLayoutError(
                    f"{full} is quantized ({parameter.dtype}); abliteration edits weights directly, so load the model "
                    "with model.quantization = 'none'."
                )
            is_attention = any(marker in path for marker in ATTENTION_MARKERS)
            is_mlp = any(marker in path for marker in MLP_MARKERS)
            if is_attention and owner in ATTENTION_OUTPUT_NAMES:
                found.append(Component("attention", index, full, parameter, 0))
                kinds.add("attention")
            elif is_mlp and owner in MLP_OUTPUT_NAMES:
                found.append(Component("mlp", index, full, parameter, 0))
                kinds.add("mlp")
        missing = [kind for kind in COMPONENTS if kind not in kinds]
        if missing:
            children = ", ".join(name for name, _ in layer.named_children())
            raise UnsupportedLayoutError(
                f"Layer {prefix} ({type(layer).__name__}) has no recognizable {' or '.join(missing)} output "
                f"projection (its children: {children}). This architecture is not supported yet."
            )
    return found


def layer_directions(directions: torch.Tensor, parameters: TrialParameters) -> torch.Tensor:
    """The unit direction each layer uses in this trial: one interpolated direction, or each layer's own."""
    if parameters.direction_scope == "per_layer":
        return directions
    single = interpolate_direction(directions, parameters.direction_index)
    return single.unsqueeze(0).expand_as(directions)


class Abliterator:
    """Applies trials to a loaded model in place and resets them from a cache of the touched matrices.

    ``directions`` is the run's :class:`DirectionSet` (each trial uses its direction method's directions), or one
    tensor of mean-difference directions.
    """

    def __init__(self, model: Any, directions: torch.Tensor | DirectionSet) -> None:
        self.model = model
        self.direction_set = directions if isinstance(directions, DirectionSet) else DirectionSet.of(directions)
        self.direction_set.by_method = {method: values.float()
                                        for method, values in self.direction_set.by_method.items()}
        self.directions = self.direction_set.mean
        self.components = find_components(model)
        self._originals: dict[str, torch.Tensor] = {}
        self._touched: list[Component] = []

    def _original(self, component: Component) -> torch.Tensor:
        """The untouched values, cached on first use; GPU weights are cached in pinned host memory so the cache
        never competes with the model for GPU memory."""
        cached = self._originals.get(component.name)
        if cached is None:
            source = component.parameter.detach()
            if source.is_cuda:
                cached = torch.empty(source.shape, dtype=source.dtype, device="cpu", pin_memory=True)
                cached.copy_(source)
            else:
                cached = source.clone()
            self._originals[component.name] = cached
        return cached

    def weights(self, parameters: TrialParameters) -> Iterator[tuple[Component, float]]:
        """Every weight the trial edits, with its strength: the edited component kinds, where the kernel is not 0."""
        kinds = edited_kinds(parameters.edited_components)
        for component in self.components:
            if component.kind not in kinds:
                continue
            kernel = parameters.kernels.get(component.kind)
            weight = kernel.weight(component.layer) if kernel else 0.0
            if weight != 0.0:
                yield component, weight

    @torch.no_grad()
    def apply(self, parameters: TrialParameters) -> None:
        """Ablate in place (resetting any previous trial first); the math runs in float32."""
        self.reset()
        per_layer = self.trial_directions(parameters)
        for component, weight in self.weights(parameters):
            self._original(component)
            tensor = component.parameter
            direction = per_layer[component.layer].to(tensor.device)
            ablated = ablate(tensor.float(), direction, weight, component.output_axis, parameters.ablation_method)
            tensor.copy_(ablated.to(tensor.dtype))
            self._touched.append(component)

    def trial_directions(self, parameters: TrialParameters) -> torch.Tensor:
        """The unit direction every layer uses in this trial ([layers, hidden]), from its direction method, made
        orthogonal to that layer's protected basis when the run has one."""
        directions = layer_directions(self.direction_set.get(parameters.direction_method), parameters)
        return protect(directions, self.direction_set.protected)

    @torch.no_grad()
    def reset(self) -> None:
        """Copy back the original values of every matrix the last trial touched (bit-for-bit)."""
        for component in self._touched:
            component.parameter.copy_(self._originals[component.name], non_blocking=True)
        if any(component.parameter.is_cuda for component in self._touched):
            torch.cuda.synchronize()
        self._touched = []


def project_out(weight: torch.Tensor, direction: torch.Tensor, strength: float, output_axis: int) -> torch.Tensor:
    """(I - strength d d^T) applied on the output axis of a 2-D weight or a 3-D fused expert tensor."""
    if weight.dim() == 2:
        projection = direction @ weight
        return weight - strength * torch.outer(direction, projection)
    if output_axis == 1:
        projection = torch.einsum("h,ehi->ei", direction, weight)
        return weight - strength * direction[None, :, None] * projection[:, None, :]
    projection = torch.einsum("h,eih->ei", direction, weight)
    return weight - strength * projection[:, :, None] * direction[None, None, :]


def input_axis(weight: torch.Tensor, output_axis: int) -> int:
    """The axis a row of the weight runs along: for each output unit (and expert), the inputs it sums."""
    if weight.dim() == 2:
        return 1 - output_axis
    return 2 if output_axis == 1 else 1


def norm_preserving_project_out(weight: torch.Tensor, direction: torch.Tensor, strength: float,
                                output_axis: int) -> torch.Tensor:
    """MPOA: the projection, then every output unit's row rescaled to its norm before the edit (module docstring)."""
    ablated = project_out(weight, direction, strength, output_axis)
    axis = input_axis(weight, output_axis)
    original = torch.linalg.vector_norm(weight, dim=axis, keepdim=True)
    edited = torch.linalg.vector_norm(ablated, dim=axis, keepdim=True)
    # A row the projection (all but) zeroes has no direction left to restore; it keeps s_i = 1, as in the
    # activation path (:mod:`~heretic_tui.core.abliteration.activation_ablation`).
    kept = edited.pow(2) > torch.finfo(torch.float32).eps * original.pow(2)
    scale = torch.where(kept, original / edited.clamp_min(torch.finfo(edited.dtype).tiny), torch.ones_like(edited))
    return ablated * scale


def ablate(weight: torch.Tensor, direction: torch.Tensor, strength: float, output_axis: int,
           method: str) -> torch.Tensor:
    """The weight with the direction taken out by the named ablation method."""
    if method == PROJECTION:
        return project_out(weight, direction, strength, output_axis)
    if method == NORM_PRESERVING:
        return norm_preserving_project_out(weight, direction, strength, output_axis)
    raise ValueError(f"Unknown ablation method {method!r}; expected one of {PROJECTION!r}, {NORM_PRESERVING!r}.")


def rank_one_factors(weight: torch.Tensor, direction: torch.Tensor, strength: float) -> tuple[torch.Tensor, torch.Tensor]:
    """LoRA factors (B, A) with B @ A = -strength d d^T W, so an adapter reproduces the ablation of a 2-D weight."""
    projection = direction @ weight.float()
    return (-strength * direction).unsqueeze(1), projection.unsqueeze(0)
