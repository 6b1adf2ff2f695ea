"""The weight analysis as Markdown (tables) and PNGs (similarity heatmap + dendrogram, spectra)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from espnet_adapters.analysis.weights import ENERGY, Analysis, FamilySummary, mean, module_group, pair_key
from espnet_adapters.utils.plots import pyplot_module, save_figure

SIMILARITY_PNG = "similarity.png"
SPECTRA_PNG = "spectra.png"


def _num(value: float, digits: int = 3) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def similarity_matrix(analysis: Analysis) -> np.ndarray:
    """Whole-adapter cosine, languages × languages, 1 on the diagonal."""
    langs = analysis.langs
    matrix = np.eye(len(langs))
    for i, a in enumerate(langs):
        for j, b in enumerate(langs):
            if i < j:
                matrix[i, j] = matrix[j, i] = analysis.whole[pair_key(a, b)]
    return matrix


def _group_entropy_ranks(analysis: Analysis, lang: str) -> dict[str, float]:
    """Mean entropy effective rank of ``lang``'s modules per group of modules."""
    by_group: dict[str, list[float]] = {}
    for module, value in analysis.entropy_ranks[lang].items():
        by_group.setdefault(module_group(module)[0], []).append(float(value))
    return {group: mean(values) for group, values in by_group.items()}


def _family_lines(summary: FamilySummary, source: str) -> list[str]:
    known = ", ".join(f"{lang} {family}" for lang, family in summary.families.items() if family is not None)
    unknown = [lang for lang, family in summary.families.items() if family is None]
    lines = [f"Families (`{source}`): {known}"
             + (f"; not in the file, left out: {', '.join(unknown)}" if unknown else "") + "."]
    if not summary.within or not summary.across:
        return lines + ["No pair within a family and across families to compare.", ""]
    def listed(pairs: dict[str, float]) -> str:
        return ", ".join(f"{key} {_num(value)}" for key, value in pairs.items())

    ranked = sorted({**summary.within, **summary.across}.items(), key=lambda item: -item[1])
    ranks = ", ".join(f"{key} {position}" for position, (key, _) in enumerate(ranked, start=1) if key in summary.within)
    return lines + [
        f"Within a family: mean {_num(summary.within_mean)} ({listed(summary.within)}); across families: mean "
        f"{_num(summary.across_mean)} ({listed(summary.across)}). Rank of each within-family pair among the "
        f"{len(ranked)} pairs (1 = most similar): {ranks}. One adapter per language: this describes these "
        "adapters; it is not a test of the hypothesis.", ""]


def render_markdown(analysis: Analysis, adapters: dict[str, str], link_prefix: str,
                    families: FamilySummary | None = None, families_source: str = "") -> str:
    """'## Adapter analysis: weights' with the tables and the two figures."""
    langs, pairs = analysis.langs, [pair_key(a, b) for a, b in analysis.pairs]
    lines = [
        "## Adapter analysis: weights",
        "",
        "What each language's adapter changed, from its effective deltas ΔW = scaling·B·A (peft's "
        "`get_delta_weight`), one per LoRA module: " + ", ".join(f"{lang} `{path}`" for lang, path in adapters.items())
        + f" ({len(analysis.modules)} modules). Cosine of two deltas as flat vectors; *whole adapter*: all "
        "modules' deltas as one vector (a module weighs by its norm).",
        "",
        "### Similarity between languages (cosine, whole adapter)",
        "",
        "|   |" + "|".join(langs) + "|",
        "|---|" + "---|" * len(langs),
    ]
    matrix = similarity_matrix(analysis)
    for i, lang in enumerate(langs):
        lines.append(f"|{lang}|" + "|".join(_num(matrix[i, j]) for j in range(len(langs))) + "|")
    ranked = sorted(pairs, key=lambda key: -analysis.whole[key])
    lines += ["", "Pairs, most similar first: " + ", ".join(f"{key} {_num(analysis.whole[key])}" for key in ranked)
              + ".", ""]
    if families is not None:
        lines += _family_lines(families, families_source)
    lines += [
        "Per group of modules (mean cosine over its layers):",
        "",
        "|group|" + "|".join(pairs) + "|",
        "|---|" + "---|" * len(pairs),
    ]
    for group in analysis.groups:
        lines.append(f"|{group}|" + "|".join(_num(analysis.by_group[group][key]) for key in pairs) + "|")
    lines += [
        "",
        "Shared start: adapters trained with the same seed begin from the same A (B starts at 0), so part of "
        "any similarity is the initialisation, not the language. Cosine of the A matrices (1 = not moved "
        "apart): " + ", ".join(f"{key} {_num(analysis.a_cosine[key])}" for key in pairs) + ".",
        "",
        "### Spectra and effective rank",
        "",
        f"Singular values of each ΔW (the leading r); effective rank per module, mean over modules: *entropy* "
        f"exp(−Σ pᵢ log pᵢ), pᵢ = σᵢ/Σσ (Roy & Vetterli 2007); *energy*: the fewest σ holding "
        f"{ENERGY:.0%} of Σσ². Both are at most r.",
        "",
        "|lang|r|‖ΔW‖_F|entropy rank|energy rank|" + "|".join(f"entropy: {group}" for group in analysis.groups) + "|",
        "|---|---|---|---|---|" + "---|" * len(analysis.groups),
    ]
    for lang in langs:
        entropy = _group_entropy_ranks(analysis, lang)
        lines.append(
            f"|{lang}|{analysis.ranks.get(lang, '-')}|{_num(analysis.norms[lang], 2)}|"
            f"{_num(mean(list(analysis.entropy_ranks[lang].values())), 1)}|"
            f"{_num(mean([float(v) for v in analysis.energy_ranks[lang].values()]), 1)}|"
            + "|".join(_num(entropy.get(group, math.nan), 1) for group in analysis.groups) + "|"
        )
    lines += ["", f"![similarity]({link_prefix}{SIMILARITY_PNG}) ![spectra]({link_prefix}{SPECTRA_PNG})", ""]
    return "\n".join(lines)


def plot_similarity(analysis: Analysis, path: Path) -> None:
    """Heatmap of the whole-adapter cosine (annotated) and, with 3+ languages, an average-linkage
    dendrogram on the distance 1 - cosine."""
    plt = pyplot_module()
    langs, matrix = analysis.langs, similarity_matrix(analysis)
    panels = 2 if len(langs) >= 3 else 1
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels + 0.5, 4), squeeze=False)
    ax = axes[0, 0]
    off_diagonal = matrix[~np.eye(len(langs), dtype=bool)]
    vmax = float(np.abs(off_diagonal).max()) if off_diagonal.size else 1.0
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-max(vmax, 1e-6), vmax=max(vmax, 1e-6))
    ax.set_xticks(range(len(langs)), langs)
    ax.set_yticks(range(len(langs)), langs)
    for i in range(len(langs)):
        for j in range(len(langs)):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=9)
    ax.set_title("cosine of the adapters' ΔW\n(colour scale: off-diagonal range)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    if panels == 2:
        from scipy.cluster.hierarchy import dendrogram, linkage
        from scipy.spatial.distance import squareform

        distance = np.clip(1.0 - matrix, 0.0, None)
        np.fill_diagonal(distance, 0.0)
        tree = linkage(squareform(distance, checks=False), method="average")
        dendrogram(tree, labels=langs, ax=axes[0, 1])
        axes[0, 1].set_ylabel("1 - cosine (average linkage)")
        axes[0, 1].set_title("adapters clustered by their deltas")
    save_figure(fig, path)


def plot_spectra(analysis: Analysis, path: Path) -> None:
    """Left: σᵢ/σ₁ averaged over modules per language; right: entropy effective rank per module."""
    plt = pyplot_module()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for lang in analysis.langs:
        curves = [np.asarray(values) / values[0] for values in analysis.spectra[lang].values() if values and values[0] > 0]
        if curves:
            length = min(len(curve) for curve in curves)
            left.plot(range(1, length + 1), np.mean([curve[:length] for curve in curves], axis=0), "o-", ms=3,
                      label=lang)
        modules = list(analysis.entropy_ranks[lang])
        right.plot(range(len(modules)), [analysis.entropy_ranks[lang][m] for m in modules], "o-", ms=3, label=lang)
    left.set_yscale("log")
    left.set_xlabel("singular value index i")
    left.set_ylabel("σᵢ / σ₁ (mean over modules)")
    left.set_title("spectra of the deltas")
    left.legend()
    modules = analysis.modules
    right.set_xticks(range(len(modules)), [_short(m) for m in modules], rotation=90, fontsize=6)
    right.set_ylabel("entropy effective rank")
    right.set_title("effective rank per module")
    right.legend()
    save_figure(fig, path)


def _short(module: str) -> str:
    group, layer, _ = module_group(module)
    stack, *rest = group.split(" ")
    return f"{stack[:3]}{layer} {' '.join(rest)}"
