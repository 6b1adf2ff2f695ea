"""Calibrating the LID: temperature scaling (Guo et al., 2017) and the expected calibration error.

An MLP trained with cross-entropy until its dev accuracy stops improving is
usually over-confident: its top posterior says 0.99 where it is right 93% of
the time.  Soft and threshold routing read the posteriors as probabilities
(mixing weights, "max p < tau"), so they should be.  Temperature scaling
divides the logits by one scalar T > 0 fitted on dev to minimise the negative
log-likelihood; the argmax, hence the accuracy and hard routing, is unchanged.

ECE: the test posteriors' top-label confidences are put into ``n_bins``
equal-width bins; ECE = sum over bins of (bin size / n) * |accuracy - mean
confidence| (0 = calibrated).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, max_iter: int = 200) -> float:
    """The T > 0 minimising the mean cross-entropy of ``logits / T`` (L-BFGS on log T, from T = 1)."""
    if logits.ndim != 2 or len(logits) != len(targets) or len(targets) == 0:
        raise ValueError(f"need (n, labels) logits and n targets, got {tuple(logits.shape)} and {len(targets)}")
    logits = logits.detach().double()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature scaling diverged (T = {temperature})")
    return temperature


def nll(posteriors: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean negative log-likelihood of the true labels (posteriors clamped at 1e-12)."""
    return float(-posteriors[torch.arange(len(targets)), targets].clamp(min=1e-12).log().mean())


def expected_calibration_error(posteriors: torch.Tensor, targets: torch.Tensor, n_bins: int = 15) -> float:
    """ECE of the top-label confidences in ``n_bins`` equal-width bins (module docstring)."""
    confidence, predicted = posteriors.max(dim=1)
    correct = (predicted == targets).double()
    bins = torch.clamp((confidence.double() * n_bins).long(), max=n_bins - 1)
    total = 0.0
    for index in range(n_bins):
        members = bins == index
        if members.any():
            total += float(members.sum()) / len(targets) * abs(
                float(correct[members].mean()) - float(confidence[members].double().mean()))
    return total


def calibration_summary(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> dict[str, Any]:
    """NLL and ECE of the posteriors before (T = 1) and after dividing the logits by ``temperature``."""
    before, after = torch.softmax(logits, dim=1), torch.softmax(logits / temperature, dim=1)
    return {"n": len(targets), "temperature": temperature,
            "nll_before": nll(before, targets), "nll_after": nll(after, targets),
            "ece_before": expected_calibration_error(before, targets),
            "ece_after": expected_calibration_error(after, targets)}
