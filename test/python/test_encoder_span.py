"""encoder_span speech: the encoder on each utterance's speech + margin, its padding masked in the decoder.

A tiny random Whisper (test_encoder_cache.make_tiny_whisper) and four
synthetic utterances of 0.7-4.6 s, as test_encoder_trim.  What must hold:
a batch decodes every utterance as that utterance alone (the cross-attention
mask), the cache of the span gives the outputs of the features within float16,
training and decoding see one encoder (the adapter records the span), and
every path that cannot run it refuses.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from espnet_adapters.bin import cache_encoder, whisper_decode
from espnet_adapters.data.kaldi import read_map, write_map
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.cross_mask import CrossAttentionFrames, frames_mask
from espnet_adapters.whisper.decode import DecodeOptions, decode_rows
from espnet_adapters.whisper.encoder import lower_states
from espnet_adapters.whisper.encoder_cache import EncoderCache
from espnet_adapters.whisper.features import iter_feats_scp, stack_features
from espnet_adapters.whisper.inputs import batch_inputs, check_adapter_encoder_trim, open_cache, speech_frames
from espnet_adapters.whisper.lora import META_FILE, LoraSpec
from espnet_adapters.whisper.model import load_whisper
from test_encoder_cache import tiny_with_feats
from test_routing import make_lang_adapter

CPU = torch.device("cpu")
MARGIN = 0.5


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, whisper_base_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("span")
    tiny, feats, scp = tiny_with_feats(root, whisper_base_dir)
    data = root / "data"
    data.mkdir()
    write_map(data / "wav.scp", {utt: "unused.wav" for utt in feats})
    write_map(data / "utt2lang", dict.fromkeys(feats, "it"))
    assert cache_encoder.main(["--feats_scp", str(scp), "--whisper_model", str(tiny), "--out_dir",
                               str(root / "cache"), "--shard", "1", "--encoder_span", "speech",
                               "--encoder_trim", str(MARGIN), "--data_dir", str(data)]) == 0
    adapter = make_lang_adapter(tiny, root / "lora_it", "it", LoraSpec(r=4, lora_alpha=8), 5)
    return {"root": root, "tiny": tiny, "scp": scp, "cache": root / "cache", "data": data, "adapter": adapter}


def _inputs(setup: dict[str, Path]) -> tuple[list, list[float]]:
    feats = dict(iter_feats_scp(setup["scp"], list(read_map(setup["scp"]))))
    return [(utt, feats[utt], "it") for utt in feats], [feats[utt].shape[0] / 100 for utt in feats]


def test_mask_hides_padding_and_follows_beams() -> None:
    mask = frames_mask(torch.tensor([2, 4]), rows=4, keys=4, dtype=torch.float32)
    assert mask.shape == (4, 1, 1, 4)
    hidden = mask[:, 0, 0] < -1e30
    assert hidden.tolist() == [[False, False, True, True]] * 2 + [[False] * 4] * 2  # beams follow their row
    with pytest.raises(ValueError, match="3 decoder rows for 2"):
        frames_mask(torch.tensor([2, 4]), rows=3, keys=4, dtype=torch.float32)


def test_a_padded_batch_decodes_each_row_as_alone(setup: dict[str, Path]) -> None:
    """The same logits and tokens (greedy and beam search) as each utterance decoded alone; without
    the mask the padding changes them, so the test can fail."""
    model, processor = load_whisper(str(setup["tiny"]), CPU)
    batch, durations = _inputs(setup)
    inputs = batch_inputs(batch, None, model=model, durations=durations, encoder_trim=MARGIN, encoder_span="speech")
    frames = speech_frames(durations, MARGIN)
    assert inputs["encoder_frames"].tolist() == frames and inputs["encoder_outputs"].shape[1] == max(frames)
    assert len(set(frames)) == 4 and max(frames) < 1500
    ids = torch.tensor([[50258, 50274, 50359, 50363, 400]] * 4)
    padded = inputs["encoder_outputs"]
    with torch.no_grad():
        with CrossAttentionFrames(model, frames).active():
            masked = model(encoder_outputs=(padded,), decoder_input_ids=ids).logits
        unmasked = model(encoder_outputs=(padded,), decoder_input_ids=ids).logits
        for row, count in enumerate(frames):
            alone = model(encoder_outputs=(padded[row : row + 1, :count],), decoder_input_ids=ids[:1]).logits[0]
            torch.testing.assert_close(masked[row], alone, rtol=1e-4, atol=1e-4)
        shortest = frames.index(min(frames))
        alone = model(encoder_outputs=(padded[shortest : shortest + 1, : frames[shortest]],),
                      decoder_input_ids=ids[:1]).logits[0]
        assert (unmasked[shortest] - alone).abs().max() > 1e-2
    for beam in (1, 2):
        opts = DecodeOptions(max_new_tokens=6, beam_size=beam, encoder_trim=MARGIN, encoder_span="speech",
                             compression_ratio_threshold=None)
        together = decode_rows(model, processor.tokenizer, **inputs, languages=["it"] * 4, opts=opts,
                               durations=durations)
        for row, count in enumerate(frames):
            one = decode_rows(model, processor.tokenizer, encoder_outputs=padded[row : row + 1, :count],
                              languages=["it"], opts=opts, durations=durations[row : row + 1])
            assert together[row].tokens == one[0].tokens


def test_each_utterance_is_encoded_on_its_own_speech(setup: dict[str, Path]) -> None:
    """The encoder runs on the utterance's frames only: not the window's outputs cut, and not its batch-mates'."""
    model, _ = load_whisper(str(setup["tiny"]), CPU)
    batch, durations = _inputs(setup)
    outputs = batch_inputs(batch, None, model=model, durations=durations, encoder_trim=MARGIN,
                           encoder_span="speech")["encoder_outputs"]
    encoder = model.get_encoder()
    _, feats, _ = batch[0]
    count = speech_frames(durations[:1], MARGIN)[0]
    single = batch_inputs(batch[:1], None, model=model, durations=durations[:1], encoder_trim=MARGIN,
                          encoder_span="speech")["encoder_outputs"][0]
    torch.testing.assert_close(outputs[0, :count], single, rtol=1e-5, atol=1e-5)
    assert float(outputs[0, count:].abs().max()) == 0.0  # padding is zeros (and masked)
    window = batch_inputs(batch[:1], None, model=model, durations=durations[:1], encoder_trim=MARGIN)["encoder_outputs"]
    assert window.shape[1] == count and (window[0] - single).abs().max() > 1e-2  # another encoder
    with torch.no_grad():
        own = encoder.layer_norm(lower_states(encoder, stack_features([feats])[:, :, : 2 * count], len(encoder.layers)))
    torch.testing.assert_close(own[0], single, rtol=1e-5, atol=1e-5)


def test_span_cache_gives_the_outputs_of_the_features(setup: dict[str, Path]) -> None:
    model, _ = load_whisper(str(setup["tiny"]), CPU)
    batch, durations = _inputs(setup)
    cache = open_cache(setup["cache"], str(setup["tiny"]), [utt for utt, _, _ in batch], [], setup["scp"],
                       speech_margin=MARGIN)
    frames = speech_frames(durations, MARGIN)
    assert [cache.frames(utt) for utt, _, _ in batch] == frames  # each entry its own length
    from_cache = batch_inputs(batch, cache, model=model, durations=durations, encoder_trim=MARGIN,
                              encoder_span="speech")
    from_feats = batch_inputs(batch, None, model=model, durations=durations, encoder_trim=MARGIN,
                              encoder_span="speech")
    scale = float(from_feats["encoder_outputs"].abs().max())
    torch.testing.assert_close(from_cache["encoder_outputs"], from_feats["encoder_outputs"], rtol=1e-3,
                               atol=1e-3 * scale)  # float16 storage
    # A window reader, another margin, or other durations are refused, naming the cache.
    with pytest.raises(UserInputError, match="holds the encoder's outputs on the speech"):
        open_cache(setup["cache"], str(setup["tiny"]), [], [], setup["scp"])
    with pytest.raises(UserInputError, match="on the speech \\+ 1 s"):
        open_cache(setup["cache"], str(setup["tiny"]), [], [], setup["scp"], speech_margin=1.0)
    longer = [d + 0.5 for d in durations]
    with pytest.raises(UserInputError, match="encoder frames cached"):
        batch_inputs(batch, cache, model=model, durations=longer, encoder_trim=MARGIN, encoder_span="speech")
    assert EncoderCache(setup["cache"], speech_margin=MARGIN).speech_margin == MARGIN
    with pytest.raises(UserInputError, match="holds the encoder's outputs on the speech"):
        EncoderCache(setup["cache"])  # a reader of the window (language ID's) is refused in so many words


def test_options_adapters_and_backends_refuse_a_mismatch(setup: dict[str, Path], tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError, match="encoder_trim must be a number"):
        DecodeOptions(encoder_span="speech")
    with pytest.raises(ValueError, match="encoder_span must be one of"):
        DecodeOptions(encoder_span="half", encoder_trim=1.0)
    adapter = setup["adapter"]
    meta = json.loads((adapter / META_FILE).read_text())
    (adapter / META_FILE).write_text(json.dumps({**meta, "encoder_trim": MARGIN, "encoder_span": "speech"}))
    assert check_adapter_encoder_trim([adapter], MARGIN, "speech") is None
    with pytest.raises(UserInputError, match="trained with encoder_span speech"):
        check_adapter_encoder_trim([adapter], MARGIN, "window")
    common = ["--data_dir", str(setup["data"]), "--whisper_model", str(setup["tiny"]), "--max_new_tokens", "4",
              "--feats_scp", str(setup["scp"]), "--adapter_dir", str(adapter), "--encoder_trim", str(MARGIN)]
    with caplog.at_level(logging.ERROR):
        assert whisper_decode.main([*common, "--out_dir", str(tmp_path / "window")]) == 1
    assert "trained with encoder_span speech" in caplog.text and not (tmp_path / "window").exists()
    # Decoded as trained, from the span's cache and from the features: the same hypotheses.
    hyps = {}
    for name, extra in (("feats", []), ("cache", ["--encoder_cache", str(setup["cache"])])):
        assert whisper_decode.main([*common, "--encoder_span", "speech", "--batch_size", "3", *extra,
                                    "--out_dir", str(tmp_path / name)]) == 0
        hyps[name] = read_map(tmp_path / name / "hyp", allow_empty_value=True)
        stats = json.loads((tmp_path / name / "stats.json").read_text())
        assert stats["options"]["encoder_span"] == "speech"
    assert sum(hyps["feats"][utt] == hyps["cache"][utt] for utt in hyps["feats"]) >= len(hyps["feats"]) - 1
    # The window cache options of cache_encoder are refused with the span's.
    assert cache_encoder.main(["--feats_scp", str(setup["scp"]), "--whisper_model", str(setup["tiny"]),
                               "--out_dir", str(tmp_path / "c"), "--shard", "1", "--encoder_span", "speech",
                               "--encoder_trim", "1.0"]) == 1
