"""What the language adapters changed in the weights: similarity between languages and spectra.

Each LoRA layer of an adapter adds ``ΔW = scaling · B · A`` to a frozen linear layer
(peft's ``get_delta_weight``, so ``lora_alpha / r`` or rsLoRA's ``lora_alpha / sqrt(r)``
and ``fan_in_fan_out`` are peft's own).  From the deltas of every language:

- **similarity**: cosine of two languages' deltas, per module (``<ΔW_a, ΔW_b>_F /
  (|ΔW_a|_F |ΔW_b|_F)``) and over the whole adapter (all modules' deltas as one vector, so
  a module weighs by its delta's norm); the mean per group of modules (encoder/decoder ×
  self-/cross-attention × projection);
- **spectra**: the singular values of every ΔW and two effective ranks, both ≤ the rank r
  of a rank-r delta: the *entropy* effective rank ``exp(-Σ p_i log p_i)`` with
  ``p_i = σ_i / Σ σ`` (Roy & Vetterli, 2007), and the *energy* rank, the fewest singular
  values holding 90 % of ``Σ σ²``;
- **families** (``conf/families.yaml``): the whole-adapter cosine of the pairs within one
  language family against the pairs across families;
- **shared initialisation**: adapters trained with the same seed start from the same
  ``A`` (peft initialises ``B`` to zero), so their deltas share a row space for a reason that
  is not linguistic; the cosine of the ``A`` matrices says how far each pair has moved from
  that shared start.

Adapters of one LoRA preset only (the same modules; ranks may differ), loaded together
through :func:`espnet_adapters.whisper.routing.load_routed_whisper`.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import PeftModel

from espnet_adapters.whisper.routing import adapter_languages, load_routed_whisper, lora_layers

ENERGY = 0.9  # the energy rank's share of Σ σ²
_MODULE = re.compile(r"(?:.*\.)?(encoder|decoder)\.layers\.(\d+)\.(self_attn|encoder_attn|fc1|fc2)(?:\.(\w+))?$")
_ATTENTION = {"self_attn": "self-attn", "encoder_attn": "cross-attn"}


def module_group(name: str) -> tuple[str, int, str]:
    """(group, layer index, projection) of a LoRA module name such as
    ``model.decoder.layers.3.encoder_attn.q_proj`` -> ("decoder cross-attn q", 3, "q")."""
    match = _MODULE.fullmatch(name)
    if match is None:
        return name, -1, name
    stack, layer, block, proj = match.groups()
    if block in ("fc1", "fc2"):
        return f"{stack} {block}", int(layer), block
    short = (proj or "").removesuffix("_proj")
    return f"{stack} {_ATTENTION[block]} {short}", int(layer), short


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of two tensors as flat vectors (float64); 0 when either is all zero."""
    a64, b64 = a.detach().reshape(-1).double(), b.detach().reshape(-1).double()
    norm = float(a64.norm() * b64.norm())
    return float(a64 @ b64) / norm if norm > 0 else 0.0


def singular_values(delta: torch.Tensor) -> torch.Tensor:
    """Singular values of a delta, descending, float64."""
    return torch.linalg.svdvals(delta.detach().double())


def entropy_rank(sigma: torch.Tensor) -> float:
    """``exp(H(p))``, ``p = σ / Σσ`` (zeros ignored): 1 for rank one, k for k equal values."""
    p = sigma[sigma > 0]
    if p.numel() == 0:
        return 0.0
    p = p / p.sum()
    return float(torch.exp(-(p * p.log()).sum()))


def energy_rank(sigma: torch.Tensor, share: float = ENERGY) -> int:
    """The fewest leading singular values whose squares hold ``share`` of ``Σ σ²``."""
    energy = sigma.double() ** 2
    total = float(energy.sum())
    if total == 0:
        return 0
    cumulative = torch.cumsum(energy, 0) / total
    return int(torch.searchsorted(cumulative, torch.tensor(share, dtype=cumulative.dtype) - 1e-12)) + 1


@dataclass
class AdapterWeights:
    """Every LoRA module's delta (and A) per language, in module order."""

    langs: list[str]
    modules: list[str]
    deltas: dict[str, dict[str, torch.Tensor]]  # module -> lang -> ΔW
    lora_a: dict[str, dict[str, torch.Tensor]]  # module -> lang -> A
    ranks: dict[str, int] = field(default_factory=dict)  # lang -> r (of the first module)


def adapter_weights(model: PeftModel) -> AdapterWeights:
    """The deltas of every adapter loaded into ``model`` (one per language)."""
    langs = adapter_languages(model)
    layers = lora_layers(model)
    deltas: dict[str, dict[str, torch.Tensor]] = {}
    lora_a: dict[str, dict[str, torch.Tensor]] = {}
    ranks: dict[str, int] = {}
    with torch.no_grad():
        for name, layer in layers.items():
            deltas[name], lora_a[name] = {}, {}
            for lang in langs:
                if lang not in layer.lora_A:
                    continue
                deltas[name][lang] = layer.get_delta_weight(lang).detach().float().cpu()
                lora_a[name][lang] = layer.lora_A[lang].weight.detach().float().cpu()
                ranks.setdefault(lang, layer.r[lang])
    return AdapterWeights(langs, list(layers), deltas, lora_a, ranks)


def load_adapter_weights(whisper_model: str, adapters: Mapping[str, Path]) -> AdapterWeights:
    """Load the base model with ``adapters`` (language -> adapter dir) and take their deltas."""
    model, _ = load_routed_whisper(whisper_model, torch.device("cpu"), adapters)
    return adapter_weights(model)


@dataclass
class Analysis:
    """The numbers of the report (all plain Python, written to analysis.json)."""

    langs: list[str]
    ranks: dict[str, int]
    pairs: list[tuple[str, str]]
    whole: dict[str, float]  # "a-b" -> cosine over the whole adapter
    by_group: dict[str, dict[str, float]]  # group -> "a-b" -> mean module cosine
    a_cosine: dict[str, float]  # "a-b" -> cosine of all A matrices (shared initialisation)
    norms: dict[str, float]  # lang -> |ΔW|_F over the whole adapter
    spectra: dict[str, dict[str, list[float]]]  # lang -> module -> singular values (leading r)
    entropy_ranks: dict[str, dict[str, float]]  # lang -> module -> entropy effective rank
    energy_ranks: dict[str, dict[str, int]]  # lang -> module -> energy rank
    groups: list[str]
    modules: list[str]

    def to_json(self) -> dict[str, object]:
        """The fields as JSON values; NaN (a pair without comparable modules) becomes null."""
        return {key: _json_value(value) for key, value in self.__dict__.items()}


def _json_value(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    return value


def pair_key(a: str, b: str) -> str:
    return f"{a}-{b}"


def analyse(weights: AdapterWeights) -> Analysis:
    """Similarities, norms and spectra of the deltas in ``weights``."""
    langs, modules = weights.langs, weights.modules
    pairs = list(itertools.combinations(langs, 2))
    groups = list(dict.fromkeys(module_group(name)[0] for name in modules))
    whole, by_group, a_cosine = {}, {group: {} for group in groups}, {}
    for a, b in pairs:
        shared = [m for m in modules if a in weights.deltas[m] and b in weights.deltas[m]]
        whole[pair_key(a, b)] = cosine(
            torch.cat([weights.deltas[m][a].reshape(-1) for m in shared]),
            torch.cat([weights.deltas[m][b].reshape(-1) for m in shared]),
        )
        same_rank = [m for m in shared if weights.lora_a[m][a].shape == weights.lora_a[m][b].shape]
        a_cosine[pair_key(a, b)] = cosine(
            torch.cat([weights.lora_a[m][a].reshape(-1) for m in same_rank]),
            torch.cat([weights.lora_a[m][b].reshape(-1) for m in same_rank]),
        ) if same_rank else math.nan
        for group in groups:
            values = [cosine(weights.deltas[m][a], weights.deltas[m][b])
                      for m in shared if module_group(m)[0] == group]
            by_group[group][pair_key(a, b)] = sum(values) / len(values) if values else math.nan
    norms, spectra, entropy_ranks, energy_ranks = {}, {}, {}, {}
    for lang in langs:
        own = [m for m in modules if lang in weights.deltas[m]]
        norms[lang] = math.sqrt(sum(float(weights.deltas[m][lang].double().norm() ** 2) for m in own))
        spectra[lang], entropy_ranks[lang], energy_ranks[lang] = {}, {}, {}
        for m in own:
            rank = weights.lora_a[m][lang].shape[0]
            sigma = singular_values(weights.deltas[m][lang])[:rank]  # the rest is rounding noise: rank(BA) <= r
            spectra[lang][m] = [float(value) for value in sigma]
            entropy_ranks[lang][m] = entropy_rank(sigma)
            energy_ranks[lang][m] = energy_rank(sigma)
    return Analysis(langs, dict(weights.ranks), pairs, whole, by_group, a_cosine, norms, spectra,
                    entropy_ranks, energy_ranks, groups, modules)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


@dataclass
class FamilySummary:
    """Whole-adapter cosine of the language pairs within a family vs across families."""

    families: dict[str, str | None]  # lang -> family (None: not in the families file)
    within: dict[str, float]  # "a-b" -> cosine, a and b of one family
    across: dict[str, float]  # "a-b" -> cosine, two known families

    @property
    def within_mean(self) -> float:
        return mean(list(self.within.values()))

    @property
    def across_mean(self) -> float:
        return mean(list(self.across.values()))

    def to_json(self) -> dict[str, object]:
        return _json_value({"families": self.families, "within": self.within, "across": self.across,
                            "within_mean": self.within_mean, "across_mean": self.across_mean})


def family_summary(analysis: Analysis, families: Mapping[str, str]) -> FamilySummary:
    """Split the pairs of ``analysis`` by ``families`` (pairs with an unknown family are left out)."""
    of = {lang: families.get(lang) for lang in analysis.langs}
    within, across = {}, {}
    for a, b in analysis.pairs:
        if of[a] is None or of[b] is None:
            continue
        (within if of[a] == of[b] else across)[pair_key(a, b)] = analysis.whole[pair_key(a, b)]
    return FamilySummary(of, within, across)
