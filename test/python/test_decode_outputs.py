"""The decoders' outputs are written by one writer (espnet_adapters/utils/decode_outputs.py), byte for byte as before.

The golden files under ``fixtures/decode_outputs/`` were written by the four
decoders *before* their writers were merged into one (whisper_decode,
route_decode, owsm_decode, codeswitch_decode as of issue 12's first part).
Here the same decoders run again on the same inputs, with the models replaced
by deterministic fakes (a row's text, language and safeguard counts follow from
its input alone, whatever the batching) and a fake clock, from relative paths:
every output file must be byte-identical to its golden twin.

``RECORD_DECODE_OUTPUTS=1 pytest test/python/test_decode_outputs.py`` rewrites
the golden files (only when an output format is changed on purpose).
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kaldiio
import numpy as np
import pytest
import torch

from espnet_adapters.bin import codeswitch_decode, owsm_decode, route_decode, whisper_decode
from espnet_adapters.codeswitch import decode as codeswitch_lib
from espnet_adapters.codeswitch.detect import Span
from espnet_adapters.data.kaldi import write_map
from espnet_adapters.routing import decode as routing_decode

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "decode_outputs"
RECORD = os.environ.get("RECORD_DECODE_OUTPUTS") == "1"

# Per utterance index: text (empty, non-ASCII, quotes), detected language, trimmed frames, utt2dur.
TEXTS = ["नमस्ते दुनिया", "", "il gatto dorme", 'un "test" con ünïcode', "తెలుగు వాక్యం"]
DETECTED = ["hi", "en", "it", "it", "te"]
DETECTED_SET = ("en", "hi", "it", "te")
FRAMES = [50, 120, 80, 200, 30]
UTT2DUR = {"utt0": "0.49", "utt2": "0.8", "utt4": "0.31"}  # not all: audio_seconds None, durations utt2dur+frames
UTT2LANG = {"utt0": "hi", "utt1": "it", "utt2": "it", "utt3": "hi", "utt4": "te"}
POSTERIORS = {"utt0": "hi:0.9 it:0.05 te:0.05", "utt1": "hi:0.1 it:0.5 te:0.4", "utt2": "it:1",
              "utt3": "hi:0.3 it:0.45 te:0.25", "utt4": "te:0.7 hi:0.3"}
OWSM_SECONDS = [2.5, 1.0, 3.25, 12.0, 0.5]  # utt3 is longer than the fake model's 10 s window


class FakeClock:
    """``time`` for the decoders: perf_counter advances 1.25 s per call."""

    def __init__(self) -> None:
        self.ticks = itertools.count()

    def perf_counter(self) -> float:
        return 100.0 + 1.25 * next(self.ticks)


def _index(row: torch.Tensor) -> int:
    """The utterance index the fixture's features carry in every value."""
    return int(round(float(row.flatten()[0])))


def _fake_rows(input_features: torch.Tensor | None, encoder_outputs: torch.Tensor | None) -> list[int]:
    tensor = input_features if input_features is not None else encoder_outputs
    assert tensor is not None
    return [_index(row) for row in tensor]


def fake_decode_features(model: Any, tokenizer: Any, *, input_features: torch.Tensor | None = None,
                         encoder_outputs: torch.Tensor | None = None, languages: Any, opts: Any,
                         durations: Any = None, stats: dict[str, int] | None = None,
                         row_context: Any = None) -> list[str]:
    rows = _fake_rows(input_features, encoder_outputs)
    pending = [position for position, index in enumerate(rows) if index == 3]
    if row_context is not None and pending:  # the fallback re-decodes these rows under their own weights
        with row_context(torch.tensor(pending)):
            pass
    if stats is not None:
        stats["capped"] += sum(index in (1, 3) for index in rows)
        stats["fallbacks"] += sum(index == 3 for index in rows)
    return [TEXTS[index] for index in rows]


def fake_detect_languages(model: Any, *, input_features: torch.Tensor | None = None,
                          encoder_outputs: torch.Tensor | None = None) -> list[str]:
    return [DETECTED[index] for index in _fake_rows(input_features, encoder_outputs)]


class FakeModel:
    device = "cpu"
    dtype = torch.float32
    generation_config = SimpleNamespace(lang_to_id={f"<|{lang}|>": k for k, lang in enumerate(DETECTED_SET)})


class FakeTokenizer:
    """Only what the decoders ask before decoding: whether a language has a token."""

    unk_token_id = -1

    def convert_tokens_to_ids(self, token: str) -> int:
        return 1 if token in FakeModel.generation_config.lang_to_id else -1


FAKE_PROCESSOR = SimpleNamespace(feature_extractor=SimpleNamespace(hop_length=160), tokenizer=FakeTokenizer())


class FakeRoutingWeights:
    def __init__(self, model: Any, weights: torch.Tensor) -> None:
        pass

    def __enter__(self) -> FakeRoutingWeights:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _data(root: Path) -> None:
    """``data/`` (wav.scp, utt2lang, utt2dur, posteriors), ``feats/`` and ``adapters/<lang>`` under ``root``."""
    data = root / "data"
    data.mkdir()
    order = ["utt3", "utt0", "utt4", "utt1", "utt2"]  # not sorted: the outputs are
    write_map(data / "wav.scp", {utt: f"audio/{utt}.wav" for utt in order})
    write_map(data / "utt2lang", UTT2LANG)
    write_map(data / "utt2dur", UTT2DUR)
    write_map(data / "posteriors", POSTERIORS)
    (root / "feats").mkdir()
    with kaldiio.WriteHelper(f"ark,scp:{root / 'feats/feats.ark'},{root / 'feats/feats.scp'}") as writer:
        for utt in order:
            index = int(utt[-1])
            writer(utt, np.full((FRAMES[index], 80), float(index), dtype=np.float32))
    for lang in ("hi", "it", "te"):
        (root / "adapters" / lang).mkdir(parents=True)
    # relative paths in the feats.scp: stats.json then holds no temporary dir
    scp = root / "feats" / "feats.scp"
    scp.write_text(scp.read_text().replace(f"{root}/", ""))


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _data(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _check(out: Path, name: str) -> None:
    """Every file under ``out`` equals its golden twin under ``GOLDEN/name`` (and no file is missing)."""
    golden = GOLDEN / name
    if RECORD:
        shutil.rmtree(golden, ignore_errors=True)
        shutil.copytree(out, golden)
    made = sorted(str(path.relative_to(out)) for path in out.rglob("*") if path.is_file())
    expected = sorted(str(path.relative_to(golden)) for path in golden.rglob("*") if path.is_file())
    assert made == expected
    for rel in made:
        assert (out / rel).read_bytes() == (golden / rel).read_bytes(), rel


def _patch_whisper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(whisper_decode, "load_whisper", lambda *args, **kwargs: (FakeModel(), FAKE_PROCESSOR))
    monkeypatch.setattr(whisper_decode, "time", FakeClock())
    for module in (whisper_decode, routing_decode):
        monkeypatch.setattr(module, "decode_features", fake_decode_features)
        monkeypatch.setattr(module, "detect_languages", fake_detect_languages)


@pytest.mark.parametrize(("name", "extra"), [
    ("whisper_forced", ["--adapter_dir", "adapters/hi", "--beam_size", "2", "--temperatures", "0", "0.4"]),
    ("whisper_auto", ["--lang_mode", "auto", "--seed", "3"]),
])
def test_whisper_decode_outputs_are_unchanged(workdir: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                                              extra: list[str]) -> None:
    _patch_whisper(monkeypatch)
    assert whisper_decode.main(["--data_dir", "data", "--feats_scp", "feats/feats.scp", "--out_dir", "out",
                                "--whisper_model", "tiny", "--batch_size", "2", *extra]) == 0
    _check(workdir / "out", name)


def test_route_decode_outputs_are_unchanged(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _patch_whisper(monkeypatch)
    monkeypatch.setattr(route_decode, "load_routed_whisper", lambda *args, **kwargs: (FakeModel(), FAKE_PROCESSOR))
    monkeypatch.setattr(route_decode, "adapter_languages", lambda model: ["hi", "it", "te"])
    monkeypatch.setattr(route_decode, "time", FakeClock())
    monkeypatch.setattr(routing_decode, "RoutingWeights", FakeRoutingWeights)
    assert route_decode.main(["--data_dir", "data", "--feats_scp", "feats/feats.scp", "--out_dir", "out",
                              "--whisper_model", "tiny", "--batch_size", "2", "--strategy", "threshold",
                              "--tau", "0.6", "--posteriors", "data/posteriors",
                              *(arg for lang in ("hi", "it", "te") for arg in ("--adapter", f"{lang}=adapters/{lang}"))
                              ]) == 0
    _check(workdir / "out", "route_threshold")


def test_owsm_decode_outputs_are_unchanged(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lengths = {f"audio/utt{k}.wav": int(seconds * owsm_decode.FS) for k, seconds in enumerate(OWSM_SECONDS)}
    monkeypatch.setattr(owsm_decode, "fetch_owsm", lambda *args: SimpleNamespace(config={}, name="owsm_tiny"))
    monkeypatch.setattr(owsm_decode, "model_window", lambda config: 10.0)
    monkeypatch.setattr(owsm_decode, "load_speech2text", lambda model, lang, adapter_dir, options: lang)
    monkeypatch.setattr(owsm_decode, "read_audio", lambda entry, fs, where: np.zeros(lengths[entry], np.float32))
    by_length = {length: TEXTS[k] for k, length in enumerate(lengths.values())}
    monkeypatch.setattr(owsm_decode, "transcribe", lambda decoder, audio: by_length[len(audio)])
    monkeypatch.setattr(owsm_decode, "time", FakeClock())
    assert owsm_decode.main(["--data_dir", "data", "--out_dir", "out", "--owsm_model", "owsm_tiny.zip",
                             "--adapter_dir", "adapters/hi", "--beam_size", "3"]) == 0
    _check(workdir / "out", "owsm")


def _fake_analysis(model: Any, processor: Any, lid: Any, wav_scp: Any, wav_scp_path: Any, truth: Any,
                   systems: Any, windowing: Any, timer: Any) -> codeswitch_lib.Analysis:
    analysis = codeswitch_lib.Analysis({}, {}, {})
    feats = np.zeros((10, 80), np.float32)
    for system in systems:
        pieces = []
        for k, utt in enumerate(sorted(wav_scp)):
            if system == "segments":
                spans = [Span(0.0, 1.5, "hi"), Span(1.5, 3.25, "it")] if k == 0 else [Span(0.0, 2.0, "it")]
            else:
                spans = [Span(0.0, 3.25 if k == 0 else 2.0, "hi" if system == "utterance_hard" else None)]
            pieces += [codeswitch_lib.Piece(f"{utt}-{n:02d}" if system == "segments" else utt, utt, span, feats)
                       for n, span in enumerate(spans)]
        analysis.pieces[system] = pieces
    for k, utt in enumerate(sorted(wav_scp)):
        centers = np.arange(0.5, 2.0, 0.5)
        analysis.windows[utt] = np.column_stack([centers, np.full((3, 2), 0.25 + 0.5 * (k % 2))]).astype(np.float32)
        analysis.detected[utt] = [1.5] if k == 0 else []
    analysis.audio_seconds = 5.25
    timer.seconds.update({"encoder": 0.5, "lid": 0.25, "segment_features": 0.125})
    return analysis


def _fake_decode_pieces(model: Any, processor: Any, pieces: Any, opts: Any,
                        stats: dict[str, int] | None = None, cut_layer: int | None = None) -> dict[str, tuple[str, str]]:
    assert cut_layer is None  # decoder adapters: the frames are cut after the encoder
    if stats is not None:
        stats["capped"] += len(pieces)
    return {piece.key: (piece.span.lang or "en", TEXTS[k % len(TEXTS)]) for k, piece in enumerate(pieces)}


def test_codeswitch_decode_outputs_are_unchanged(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_map(workdir / "cs" / "wav.scp", {"cs0": "audio/cs0.wav", "cs1": "audio/cs1.wav"})
    lid = SimpleNamespace(labels=["hi", "it"], model=SimpleNamespace(to=lambda device: None))
    monkeypatch.setattr(codeswitch_lib, "load_lid", lambda *args, **kwargs: lid)
    monkeypatch.setattr(codeswitch_lib, "lid_base_model", lambda *args: "tiny")
    monkeypatch.setattr(codeswitch_lib, "load_routed_whisper", lambda *args: (FakeModel(), FAKE_PROCESSOR))
    monkeypatch.setattr(codeswitch_lib, "adapter_languages", lambda model: ["hi", "it"])
    monkeypatch.setattr(codeswitch_lib, "analyse", _fake_analysis)
    monkeypatch.setattr(codeswitch_lib, "decode_pieces", _fake_decode_pieces)
    monkeypatch.setattr(codeswitch_lib, "time", FakeClock())
    assert codeswitch_decode.main(["--data_dir", "cs", "--lid_dir", "lid", "--out_dir", "out",
                                   "--adapter", "hi=adapters/hi", "--adapter", "it=adapters/it",
                                   "--systems", "segments", "utterance_hard", "base", "--max_new_tokens", "5"]) == 0
    _check(workdir / "out", "codeswitch")


def test_every_golden_file_is_checked() -> None:
    assert sorted(path.name for path in GOLDEN.iterdir()) == sorted(
        ["whisper_forced", "whisper_auto", "route_threshold", "owsm", "codeswitch"])

