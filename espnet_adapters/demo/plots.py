"""The demo's figure: the LID's language probabilities over time, and which adapters each segment used."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from espnet_adapters.transcribe.formats import Transcript  # noqa: E402


def routing_figure(transcript: Transcript) -> bytes:
    """PNG bytes: top, the LID's sliding-window posteriors per language; bottom, each segment's adapter weights."""
    languages = list(transcript.segments[0].adapter_weights) if transcript.segments else []
    colours = {lang: plt.get_cmap("tab10")(index) for index, lang in enumerate(languages)}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 4.2), sharex=True, height_ratios=(3, 1.2))
    timeline = transcript.lid_timeline
    if timeline:
        for lang in languages:
            top.plot(timeline["seconds"], timeline["probabilities"][lang], label=lang, color=colours[lang])
        top.legend(loc="upper right", ncols=len(languages), fontsize=8)
    else:
        top.text(0.5, 0.5, "no LID (forced language or base model)", ha="center", va="center",
                 transform=top.transAxes)
    top.set_ylim(-0.02, 1.02)
    top.set_ylabel("P(language)")
    top.set_title("Language ID over time (1 s windows) and the adapters each segment was decoded with", fontsize=9)
    for segment in transcript.segments:
        left = 0.0
        for lang in languages:
            weight = segment.adapter_weights[lang]
            if weight > 0:
                bottom.barh(left, segment.end - segment.start, height=weight, left=segment.start,
                            color=colours[lang], edgecolor="white", align="edge")
            left += weight
        bottom.axvline(segment.start, color="grey", linewidth=0.5)
    bottom.set_ylim(0, 1)
    bottom.set_yticks([])
    bottom.set_ylabel("weights", fontsize=8)
    bottom.set_xlabel("seconds")
    bottom.set_xlim(0, max(transcript.duration, 1e-3))
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()
