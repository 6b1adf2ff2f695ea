"""Route each utterance to a weighted mixture of language adapters, in one forward pass.

All language adapters are loaded into ONE ``PeftModel``, under their language
codes as adapter names (:func:`load_routed_whisper`).  Inside
``with RoutingWeights(model, weights):`` every LoRA linear layer computes, for
row ``b`` of its input,

    out[b] = base(x[b]) + sum_k weights[b, k] * scaling_k * B_k(A_k(dropout_k(x[b])))

i.e. the weight update ``sum_k w_k scaling_k B_k A_k`` (:func:`effective_delta`)
is applied per utterance, without rewriting any base weight.  Column ``k`` of
``weights`` is adapter ``adapter_languages(model)[k]`` (load order).

Why not peft's own machinery: ``add_weighted_adapter`` builds a *new* adapter
from one fixed combination (one per mixture, for the whole batch, and with
rank concatenation or SVD), not one mixture per utterance; ``adapter_names=``
(``_mixed_batch_forward``) sends each sample to exactly one adapter; and
``set_adapter([a, b])`` adds several adapters with weight 1 each.  So while
routing, the LoRA layers' own adapter path is switched off with peft's
``disable_adapter()`` (they compute ``base(x)`` only) and a forward hook on each
layer adds the weighted deltas.  Leaving the context removes the hooks and
re-enables the adapters: outside it the model is peft's unchanged model.

Exactness: an adapter whose weight is zero for every row of the batch is not
computed at all, and the others' deltas are computed exactly as peft's
``Linear.forward`` does, then multiplied by the weight.  So a one-hot batch gives
bit-identical outputs to peft's single-adapter forward (``x * 1.0 == x``), and
all-zero weights give the base model's outputs.

Batch expansion: ``generate(num_beams=k)`` runs the encoder on the B utterances
and then repeats every utterance's rows k times, consecutively
(``repeat_interleave``), for the decoder.  A layer that sees ``m * B`` rows uses
each utterance's weights for its m consecutive rows.  The whole decoder prompt
(start, language and task tokens) is decoded with the utterance's mixture; which
language token it gets is the caller's choice (see ``bin/route_decode.py``).
"""

from __future__ import annotations

import logging
import re
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Mapping, Sequence

import torch
from peft import PeftModel
from peft.tuners.lora import Linear as LoraLinear
from peft.tuners.tuners_utils import BaseTunerLayer
from transformers import WhisperProcessor

from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.model import adapter_weight_names, attach_adapter, job_dtype, load_whisper, resolve_model

logger = logging.getLogger(__name__)

STRATEGIES = ("oracle", "hard", "soft", "threshold", "hierarchical", "base")
_LORA_WEIGHT = re.compile(r"(.+)\.lora_[AB]\.weight")


# --------------------------------------------------------------------------- loading


def _adapted_modules(adapter_dir: Path) -> frozenset[str]:
    """The modules an adapter changes, from the weight names it stores.

    Anything but ``lora_A``/``lora_B`` weights (DoRA magnitudes, ``modules_to_save``
    copies, LoRA biases) is not a plain low-rank delta, and mixing it by weights
    would mean something else: refused.
    """
    modules = set()
    for key in adapter_weight_names(adapter_dir):
        match = _LORA_WEIGHT.fullmatch(key)
        if match is None:
            raise UserInputError(f"{adapter_dir}: stores {key}; routing mixes plain LoRA adapters (lora_A/lora_B) only")
        modules.add(match[1])
    return frozenset(modules)


def check_same_targets(adapters: Mapping[str, Path]) -> None:
    """All adapters must adapt the same modules (one LoRA preset: target_modules, where, layers).

    With different targets a mixture weight would apply in some layers and not
    in others, and whether cached encoder outputs are valid would depend on the
    routing.  Ranks may differ: ``sum_k w_k B_k A_k`` is defined for any ranks.
    """
    (first_lang, first_dir), *others = adapters.items()
    first = _adapted_modules(first_dir)
    for lang, directory in others:
        modules = _adapted_modules(directory)
        if modules != first:
            only_first, only_other = sorted(first - modules), sorted(modules - first)
            raise UserInputError(
                f"adapters {first_dir} ({first_lang}) and {directory} ({lang}) adapt different modules:"
                f" {len(only_first)} only in the first {only_first[:2]}, {len(only_other)} only in the second"
                f" {only_other[:2]}; routing mixes adapters of one LoRA preset (same target_modules, where, layers)"
            )


def load_routed_whisper(
    name: str, device: torch.device, adapters: Mapping[str, Path]
) -> tuple[PeftModel, WhisperProcessor]:
    """The base model with every adapter of ``adapters`` (language -> dir) under its language's name, in eval mode.

    Loaded like :func:`~espnet_adapters.whisper.model.load_whisper`: adapters are
    attached to the float32 base, and the cast to the job's dtype comes last.
    """
    if not adapters:
        raise UserInputError("routing needs at least one adapter (--adapter LANG=DIR)")
    check_same_targets(adapters)
    model, processor = load_whisper(name, torch.device("cpu"))
    source = resolve_model(name)
    for lang, directory in adapters.items():
        model = attach_adapter(model, source, directory, adapter_name=lang)
    logger.info("routing over adapters %s", ", ".join(f"{lang}={path}" for lang, path in adapters.items()))
    return model.to(device, job_dtype(device)).eval(), processor


def adapter_languages(model: PeftModel) -> list[str]:
    """The adapter names in load order: the column order of every weight matrix."""
    return list(model.peft_config)


def lora_layers(model: PeftModel) -> dict[str, LoraLinear]:
    """The LoRA layers by their name in the Whisper model (``model.decoder.layers.0.self_attn.q_proj``).

    Only plain LoRA on linear layers is mixed; other adapter layers (LoRA on
    embeddings, DoRA and other variants) compute differently and are refused.
    """
    layers: dict[str, LoraLinear] = {}
    for name, module in model.base_model.model.named_modules():
        if not isinstance(module, BaseTunerLayer):
            continue
        if not isinstance(module, LoraLinear) or module.lora_variant:
            raise ValueError(f"{name}: routing mixes plain LoRA on linear layers, not {type(module).__name__}")
        layers[name] = module
    return layers


# --------------------------------------------------------------------------- mixing


class RoutingWeights:
    """``with RoutingWeights(model, weights): model.generate(...)``: one adapter mixture per utterance.

    ``weights`` is (B, N): row ``b`` for utterance ``b`` of the batch, column ``k``
    for adapter ``adapter_languages(model)[k]``.  See the module docstring for
    the arithmetic, the exactness guarantees and the beam expansion.
    """

    def __init__(self, model: PeftModel, weights: torch.Tensor) -> None:
        languages = adapter_languages(model)
        if weights.dim() != 2 or weights.shape[1] != len(languages):
            expected = f"(batch, {len(languages)}) for adapters {languages}"
            raise ValueError(f"weights must be {expected}, got {tuple(weights.shape)}")
        if not torch.isfinite(weights).all():
            raise ValueError("weights must be finite")
        self._model = model
        self._layers = lora_layers(model)
        self._languages = languages
        self._weights = weights.detach().to(model.device)
        # Adapters nobody in the batch uses are skipped: no cost, and exact one-hot/zero results.
        self._used = [k for k in range(len(languages)) if bool(self._weights[:, k].ne(0).any())]
        self._per_rows: dict[int, torch.Tensor] = {}
        self._stack: ExitStack | None = None

    def __enter__(self) -> RoutingWeights:
        merged = [name for name, layer in self._layers.items() if layer.merged]
        if merged:
            raise ValueError(f"{merged[0]}: an adapter is merged into the base weights; routing needs them unmerged")
        with ExitStack() as stack:
            stack.enter_context(self._model.disable_adapter())
            for layer in self._layers.values():
                stack.callback(layer.register_forward_hook(self._add_mixture).remove)
            self._stack = stack.pop_all()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def _for_rows(self, rows: int) -> torch.Tensor:
        """The weights of each input row: utterance ``b`` owns rows ``b*m .. b*m+m-1`` after an expansion by ``m``."""
        if rows not in self._per_rows:
            batch = self._weights.shape[0]
            if rows % batch:
                raise RuntimeError(f"a LoRA layer got {rows} rows for {batch} routed utterances: not a multiple")
            self._per_rows[rows] = self._weights.repeat_interleave(rows // batch, dim=0)
        return self._per_rows[rows]

    def _add_mixture(self, layer: LoraLinear, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        """Forward hook: ``output`` is ``base(x)`` (adapters disabled); add the weighted deltas as peft adds one."""
        x = args[0]
        weights = self._for_rows(x.shape[0])
        result = output
        for k in self._used:
            name = self._languages[k]
            if name not in layer.lora_A:
                continue
            lora_A, lora_B = layer.lora_A[name], layer.lora_B[name]
            delta = lora_B(lora_A(layer.lora_dropout[name](x.to(lora_A.weight.dtype)))) * layer.scaling[name]
            column = weights[:, k].to(delta.dtype).view(-1, *[1] * (delta.dim() - 1))
            result = result + delta * column
        return result.to(output.dtype)


def effective_delta(model: PeftModel, layer_name: str, weights: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """``sum_k w_k * scaling_k * B_k @ A_k`` of one layer: the weight update a row with ``weights`` gets.

    Computed from the adapter weights (peft's ``get_delta_weight``), not from a
    forward pass, so tests can check the mixing on the weights themselves.
    ``layer_name`` is a key of :func:`lora_layers`.
    """
    layers = lora_layers(model)
    if layer_name not in layers:
        raise KeyError(f"{layer_name}: not a LoRA layer of the model (e.g. {next(iter(layers))})")
    layer, languages = layers[layer_name], adapter_languages(model)
    values = torch.as_tensor(weights, dtype=torch.float64).tolist()
    if len(values) != len(languages):
        raise ValueError(f"{len(values)} weights for {len(languages)} adapters {languages}")
    delta = torch.zeros_like(layer.get_base_layer().weight)
    for weight, name in zip(values, languages):
        if weight != 0 and name in layer.lora_A:
            delta = delta + weight * layer.get_delta_weight(name)
    return delta


# --------------------------------------------------------------------------- strategies


def _normalised(posteriors: torch.Tensor) -> torch.Tensor:
    """Posteriors as a distribution over the adapters: a LID may leave mass on languages without one."""
    return posteriors / posteriors.sum(dim=1, keepdim=True)


def _one_hot_argmax(posteriors: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(posteriors.argmax(dim=1), posteriors.shape[1]).to(posteriors.dtype)


def _top_k(posteriors: torch.Tensor, top_k: int) -> torch.Tensor:
    """The ``top_k`` largest posteriors of each row, renormalised to sum to 1; the others zero."""
    values, indices = posteriors.topk(top_k, dim=1)
    return torch.zeros_like(posteriors).scatter(1, indices, values / values.sum(dim=1, keepdim=True))


def _hierarchical(probabilities: torch.Tensor, families: Sequence[str], tau: float) -> torch.Tensor:
    """Family first, then the language within it (see :func:`route`); ``families[k]``: adapter k's family."""
    names = sorted(set(families))
    member = torch.tensor([[family == name for family in families] for name in names], dtype=probabilities.dtype)
    family_mass = probabilities @ member.T  # (B, families)
    top = family_mass.argmax(dim=1)
    mass = family_mass.gather(1, top[:, None])  # (B, 1): the top family's probability
    within = probabilities * member[top] / mass  # the top family's languages, renormalised; others 0
    family_sure = mass[:, 0] >= tau
    language_sure = family_sure & (within.max(dim=1).values >= tau)
    mixed = torch.where(family_sure[:, None], within, probabilities)
    return torch.where(language_sure[:, None], _one_hot_argmax(within), mixed)


def _check_posteriors(posteriors: torch.Tensor, strategy: str, top_k: int) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}")
    if posteriors.dim() != 2:
        raise ValueError(f"posteriors must be (batch, adapters), got {tuple(posteriors.shape)}")
    if not (torch.isfinite(posteriors).all() and (posteriors >= 0).all()):
        raise ValueError("posteriors must be finite and >= 0")
    if strategy != "base" and not (posteriors.sum(dim=1) > 0).all():
        raise ValueError("every row of posteriors needs some mass")
    if strategy == "threshold" and not 1 <= top_k <= posteriors.shape[1]:
        raise ValueError(f"top_k must be in 1..{posteriors.shape[1]} (the number of adapters), got {top_k}")


def route(
    posteriors: torch.Tensor, strategy: str, tau: float = 0.5, top_k: int = 2, families: Sequence[str] | None = None,
) -> torch.Tensor:
    """Mixture weights (B, N) from LID posteriors (B, N) over the N adapters.

    oracle     the posteriors of a perfect LID are given (one-hot truth) and kept
    hard       one-hot on the argmax
    soft       the posteriors, renormalised over the adapters
    threshold  hard where the LID is confident (max p >= tau, after
               renormalising), else the top_k posteriors renormalised
    hierarchical  language family first (``families``: the family of each
               adapter, conf/families.yaml), then the language within it: the
               family's probability F (the sum over its languages) and the
               language's share of it p/F.  F >= tau and p/F >= tau: the top
               family's top language alone (not always hard's choice: a family
               of two 0.3 languages beats one of 0.4); F >= tau only: the family's languages mixed by
               p/F, the others 0; F < tau: all adapters mixed by p (soft)
    base       zeros: no adapter (the base model's output exactly)
    """
    _check_posteriors(posteriors, strategy, top_k)
    if strategy == "hierarchical" and (families is None or len(families) != posteriors.shape[1]):
        raise ValueError(f"hierarchical routing needs one family per adapter ({posteriors.shape[1]}), got {families}")
    if strategy == "base":
        return torch.zeros_like(posteriors)
    if strategy == "oracle":
        if not bool(((posteriors == 0) | (posteriors == 1)).all() and (posteriors.sum(dim=1) == 1).all()):
            raise ValueError("oracle routing takes the truth as one-hot rows, not LID posteriors")
        return posteriors.clone()
    probabilities = _normalised(posteriors)
    if strategy == "hard":
        return _one_hot_argmax(probabilities)
    if strategy == "soft":
        return probabilities
    if strategy == "hierarchical":
        assert families is not None
        return _hierarchical(probabilities, families, tau)
    confident = probabilities.max(dim=1).values >= tau
    return torch.where(confident[:, None], _one_hot_argmax(probabilities), _top_k(probabilities, top_k))


def routed_languages(weights: torch.Tensor, languages: Sequence[str]) -> list[str | None]:
    """The language token for each row: the adapter of largest weight; ``None`` for a row with no adapter."""
    return [None if not bool(row.ne(0).any()) else languages[int(row.argmax())] for row in weights]
