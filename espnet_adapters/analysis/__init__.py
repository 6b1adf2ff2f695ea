"""Analysis of trained language adapters: what they changed, and how the languages relate.

Modules, one concern each:
  weights.py  the effective deltas ΔW of every LoRA module, their cosine similarity between
              languages (per module, per group, whole adapter), singular values and effective
              ranks, and the shared-initialisation check (analyze_adapters)
  report.py   the "## Adapter analysis: weights" section and its PNGs (heatmap + dendrogram, spectra)
"""
