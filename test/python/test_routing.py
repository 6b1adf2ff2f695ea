"""Routing utterances to language adapters: per-utterance LoRA mixtures, strategies, route_decode.

A tiny random Whisper (test_encoder_cache.make_tiny_whisper) with three tiny
adapters whose lora_B is random (peft initialises it to zero, which would make
every mixture equal the base model and the tests vacuous).  "te" has another
rank than "hi" and "it": a mixture is defined for any ranks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from espnet_adapters.bin import cache_encoder, route_decode, whisper_decode
from espnet_adapters.data.kaldi import read_map, write_map
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.decode import DecodeOptions, decode_features
from espnet_adapters.whisper.lora import LoraSpec, apply_lora, save_adapter
from espnet_adapters.whisper.routing import (
    RoutingWeights,
    adapter_languages,
    effective_delta,
    load_routed_whisper,
    lora_layers,
    route,
)
from test_encoder_cache import make_tiny_whisper, synthetic_feats, write_feats

CPU = torch.device("cpu")
LANGS = ("hi", "it", "te")
DECODER_LAYER = "model.decoder.layers.1.encoder_attn.q_proj"
ENCODER_LAYER = "model.encoder.layers.0.self_attn.v_proj"


def make_lang_adapter(tiny: Path, out_dir: Path, lang: str, spec: LoraSpec, seed: int) -> Path:
    """An adapter created like the trainer does (apply_lora + save_adapter), with a random, non-zero lora_B."""
    torch.manual_seed(seed)
    model = apply_lora(WhisperForConditionalGeneration.from_pretrained(tiny), spec)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.3)
    return save_adapter(model, out_dir, {"language": lang})


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, whisper_base_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("routing")
    tiny = make_tiny_whisper(root / "tiny", whisper_base_dir)
    both = LoraSpec(r=4, lora_alpha=8, where="both")
    paths = {"root": root, "tiny": tiny}
    for seed, lang in enumerate(LANGS, start=1):
        spec = LoraSpec(r=8, lora_alpha=16, where="both") if lang == "te" else both
        paths[lang] = make_lang_adapter(tiny, root / f"lora_{lang}", lang, spec, seed)
    for seed, lang in enumerate(("hi", "it"), start=10):  # decoder only: usable with an encoder cache
        spec = LoraSpec(r=4, lora_alpha=8)
        paths[f"dec_{lang}"] = make_lang_adapter(tiny, root / f"lora_dec_{lang}", lang, spec, seed)
    feats = synthetic_feats(WhisperProcessor.from_pretrained(tiny).feature_extractor, count=4)
    paths["scp"] = write_feats(root / "feats", feats)
    return paths


@pytest.fixture(scope="module")
def routed(setup: dict[str, Path]) -> torch.nn.Module:
    model, _ = load_routed_whisper(str(setup["tiny"]), CPU, {lang: setup[lang] for lang in LANGS})
    return model


@pytest.fixture(scope="module")
def features() -> torch.Tensor:
    return torch.randn(3, 80, 3000, generator=torch.Generator().manual_seed(0))


PROMPT = torch.tensor([[50258, 50276, 50359, 50363, 400, 1000]] * 3)  # <|sot|><|hi|><|transcribe|><|notimestamps|> ...


@torch.no_grad()
def logits(
    model: torch.nn.Module, features: torch.Tensor, weights: torch.Tensor | None = None, **kwargs: object
) -> torch.Tensor:
    inputs = {"input_features": features, "decoder_input_ids": PROMPT[: len(features)], **kwargs}
    if weights is None:
        return model(**inputs).logits
    with RoutingWeights(model, weights):
        return model(**inputs).logits


def test_adapters_load_under_their_languages(routed: torch.nn.Module) -> None:
    assert adapter_languages(routed) == list(LANGS)
    layers = lora_layers(routed)
    assert DECODER_LAYER in layers and ENCODER_LAYER in layers
    assert all(set(layer.lora_A) == set(LANGS) for layer in layers.values())


def test_one_hot_weights_are_peft_single_adapter_exactly(routed: torch.nn.Module, features: torch.Tensor) -> None:
    for k, lang in enumerate(LANGS):
        routed.set_adapter(lang)
        one_hot = F.one_hot(torch.full((3,), k), len(LANGS)).float()
        assert torch.equal(logits(routed, features, one_hot), logits(routed, features))
    # A batch routed to three different adapters: peft's per-sample adapter_names.
    routed.set_adapter("hi")
    assert torch.equal(logits(routed, features, torch.eye(3)), logits(routed, features, adapter_names=list(LANGS)))


def test_zero_weights_are_the_base_model(
    routed: torch.nn.Module, setup: dict[str, Path], features: torch.Tensor
) -> None:
    base = WhisperForConditionalGeneration.from_pretrained(setup["tiny"]).eval()
    assert torch.equal(logits(routed, features, torch.zeros(3, 3)), logits(base, features))
    assert not torch.allclose(logits(routed, features), logits(base, features))  # the adapters do change the model


@pytest.mark.parametrize("layer_name", [DECODER_LAYER, ENCODER_LAYER])
def test_half_half_delta_is_the_average_of_the_two_deltas(routed: torch.nn.Module, layer_name: str) -> None:
    layer = lora_layers(routed)[layer_name]
    delta = {
        lang: layer.scaling[lang] * layer.lora_B[lang].weight @ layer.lora_A[lang].weight for lang in ("hi", "it")
    }
    mixed = effective_delta(routed, layer_name, [0.5, 0.5, 0.0])
    torch.testing.assert_close(mixed, (delta["hi"] + delta["it"]) / 2, rtol=0, atol=1e-6)
    assert not torch.allclose(delta["hi"], delta["it"], atol=1e-3)
    torch.testing.assert_close(effective_delta(routed, layer_name, [0.0, 1.0, 0.0]), delta["it"], rtol=0, atol=1e-6)
    # ... and the routed forward applies exactly that update: x (W + delta)^T + b.
    x = torch.randn(2, 5, layer.in_features, generator=torch.Generator().manual_seed(1))
    base = layer.get_base_layer()
    with torch.no_grad(), RoutingWeights(routed, torch.tensor([[0.5, 0.5, 0.0]] * 2)):
        out = layer(x)
    torch.testing.assert_close(out, F.linear(x, base.weight + mixed, base.bias), rtol=0, atol=1e-5)


MIXTURES = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])


def test_each_row_of_a_batch_gets_its_own_mixture(routed: torch.nn.Module, features: torch.Tensor) -> None:
    batch = logits(routed, features, MIXTURES)
    for row in range(3):
        alone = logits(routed, features[row : row + 1], MIXTURES[row : row + 1])
        torch.testing.assert_close(batch[row : row + 1], alone, rtol=0, atol=1e-5)  # same maths, other GEMM shapes
    assert not torch.allclose(batch[1], batch[2], atol=1e-3)


def test_beam_search_expands_the_weights_per_utterance(routed: torch.nn.Module, setup: dict[str, Path]) -> None:
    tokenizer = WhisperProcessor.from_pretrained(setup["tiny"]).tokenizer
    features = torch.randn(3, 80, 3000, generator=torch.Generator().manual_seed(2))
    opts = DecodeOptions(beam_size=2, max_new_tokens=6)

    def texts(rows: slice) -> list[str]:
        with RoutingWeights(routed, MIXTURES[rows]):
            return decode_features(routed, tokenizer, input_features=features[rows], languages=["hi", "it", "te"][rows],
                                   opts=opts)

    mixed = texts(slice(0, 3))
    assert mixed == [text for row in range(3) for text in texts(slice(row, row + 1))]
    with RoutingWeights(routed, torch.zeros(3, 3)):
        base = decode_features(routed, tokenizer, input_features=features, languages=["hi", "it", "te"], opts=opts)
    assert mixed != base  # the mixtures really reach generate's decoder


def test_route_strategies() -> None:
    posteriors = torch.tensor([[0.7, 0.2, 0.1], [0.25, 0.35, 0.4], [0.2, 0.5, 0.1]])  # row 2: mass outside the adapters
    assert torch.equal(route(posteriors, "hard"), torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]]))
    torch.testing.assert_close(route(posteriors, "soft"), posteriors / posteriors.sum(1, keepdim=True))
    assert torch.equal(route(posteriors, "base"), torch.zeros(3, 3))
    truth = torch.tensor([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]])
    assert torch.equal(route(truth, "oracle"), truth)
    with pytest.raises(ValueError, match="one-hot"):
        route(posteriors, "oracle")
    threshold = route(posteriors, "threshold", tau=0.6, top_k=2)
    assert torch.equal(threshold[0], torch.tensor([1.0, 0, 0]))  # confident: hard
    torch.testing.assert_close(threshold[1], torch.tensor([0, 0.35 / 0.75, 0.4 / 0.75]))  # top 2, renormalised
    assert torch.equal(threshold[2], torch.tensor([0.0, 1, 0]))  # 0.5 of 0.8 = 0.625 over the adapters: confident
    torch.testing.assert_close(route(posteriors, "threshold", tau=0.63)[2], torch.tensor([2 / 7, 5 / 7, 0]))


@pytest.mark.parametrize(
    ("tau", "hard"), [(0.0, [True, True]), (0.5, [True, False]), (0.5 + 1e-6, [False, False]), (1.0, [False, False])]
)
def test_threshold_at_the_edges_of_tau(tau: float, hard: list[bool]) -> None:
    posteriors = torch.tensor([[0.5, 0.25, 0.25], [0.4, 0.35, 0.25]])  # max exactly 0.5, and below
    weights = route(posteriors, "threshold", tau=tau, top_k=2)
    assert [int((row > 0).sum()) == 1 for row in weights] == hard
    assert torch.allclose(weights.sum(1), torch.ones(2))
    assert torch.equal(route(posteriors, "threshold", tau=1.0, top_k=1), route(posteriors, "hard"))


def test_hierarchical_routing() -> None:
    """Family first, then the language: one adapter when both are certain, the family mixed when only it is, all
    mixed when not even the family is; every row sums to 1; with a family per language it is hard routing
    where the top language is certain."""
    families = ["Indo-Aryan", "Romance", "Indo-Aryan"]  # hi, it, pa
    posteriors = torch.tensor([
        [0.05, 0.9, 0.05],   # Romance 0.9, it 1.0 of it: hard
        [0.9, 0.05, 0.05],   # Indo-Aryan 0.95, hi 0.947 of it: hard
        [0.5, 0.1, 0.4],     # Indo-Aryan 0.9 certain, hi 0.56 of it not: hi and pa mixed, it 0
        [0.35, 0.4, 0.25],   # Indo-Aryan 0.6, not certain: all mixed (soft)
    ])
    weights = route(posteriors, "hierarchical", tau=0.8, families=families)
    assert torch.equal(weights[:2], route(posteriors[:2], "hard"))
    torch.testing.assert_close(weights[2], torch.tensor([0.5 / 0.9, 0.0, 0.4 / 0.9]))
    torch.testing.assert_close(weights[3], posteriors[3])
    torch.testing.assert_close(weights.sum(1), torch.ones(4))
    # tau 0: always certain: the top family's top language, which is not always hard routing's choice
    # (row 3: Indo-Aryan 0.6 beats Romance 0.4, so hi 0.35 wins over it 0.4)
    certain = route(posteriors, "hierarchical", tau=0.0, families=families)
    assert torch.equal(certain[:3], route(posteriors[:3], "hard")) and certain[3].tolist() == [1.0, 0.0, 0.0]
    assert torch.equal(route(posteriors, "hierarchical", tau=0.8, families=["a", "b", "c"])[:2],
                       route(posteriors[:2], "hard"))
    with pytest.raises(ValueError, match="one family per adapter"):
        route(posteriors, "hierarchical", families=["a", "b"])


@pytest.mark.parametrize(
    ("posteriors", "strategy", "message"),
    [
        (torch.ones(2, 3), "sticky", "unknown strategy"),
        (torch.ones(3), "hard", r"\(batch, adapters\)"),
        (torch.tensor([[0.5, -0.1, 0.6]]), "soft", ">= 0"),
        (torch.tensor([[0.0, 0.0, 0.0]]), "hard", "some mass"),
    ],
)
def test_route_rejects_bad_input(posteriors: torch.Tensor, strategy: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        route(posteriors, strategy)
    with pytest.raises(ValueError, match="top_k must be in 1..3"):
        route(torch.ones(1, 3), "threshold", top_k=4)


def test_routing_to_a_missing_adapter_is_a_clear_error(routed: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match=r"weights must be \(batch, 3\) for adapters \['hi', 'it', 'te'\]"):
        RoutingWeights(routed, torch.ones(2, 4))
    with pytest.raises(KeyError, match="model.decoder.layers.1.fc1: not a LoRA layer"):
        effective_delta(routed, "model.decoder.layers.1.fc1", [1.0, 0.0, 0.0])


def test_adapters_with_different_targets_are_refused(setup: dict[str, Path]) -> None:
    message = rf"{setup['dec_hi']} \(hi\) and {setup['it']} \(it\) adapt different modules"
    with pytest.raises(UserInputError, match=message):
        load_routed_whisper(str(setup["tiny"]), CPU, {"hi": setup["dec_hi"], "it": setup["it"]})
    with pytest.raises(UserInputError, match=rf"{setup['root']}: no adapter_model.safetensors"):
        load_routed_whisper(str(setup["tiny"]), CPU, {"hi": setup["hi"], "it": setup["root"]})


# --------------------------------------------------------------------------- route_decode


TRUTH = {"utt0": "hi", "utt1": "it", "utt2": "te", "utt3": "hi"}
POSTERIORS = {  # utt3 is misrouted by hard; utt1 and utt3 are below tau 0.6
    "utt0": "hi:0.9 it:0.05 te:0.05", "utt1": "hi:0.1 it:0.5 te:0.4", "utt2": "te:1", "utt3": "hi:0.3 it:0.45 te:0.25",
}


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    directory = tmp_path / "pooled"
    directory.mkdir()
    write_map(directory / "wav.scp", {utt: "unused.wav" for utt in TRUTH})
    write_map(directory / "utt2lang", TRUTH)
    write_map(directory / "posteriors", POSTERIORS)
    return directory


def _args(
    setup: dict[str, Path], data: Path, out: Path, strategy: str, *extra: str, adapters: dict[str, Path] | None = None
) -> list[str]:
    adapters = {lang: setup[lang] for lang in LANGS} if adapters is None else adapters
    return ["--data_dir", str(data), "--out_dir", str(out), "--whisper_model", str(setup["tiny"]),
            "--strategy", strategy, "--posteriors", str(data / "posteriors"), "--max_new_tokens", "6",
            *(arg for lang, path in adapters.items() for arg in ("--adapter", f"{lang}={path}")), *extra]


def test_route_decode_threshold_end_to_end(setup: dict[str, Path], data: Path) -> None:
    out = data.parent / "threshold"
    args = _args(setup, data, out, "threshold", "--tau", "0.6", "--feats_scp", str(setup["scp"]))
    assert route_decode.main(args) == 0
    assert sorted(read_map(out / "hyp", allow_empty_value=True)) == sorted(TRUTH)
    routing = {utt: value.split() for utt, value in read_map(out / "routing").items()}
    assert routing["utt0"] == ["hi", "hi:1", "it:0", "te:0"]
    assert routing["utt1"] == ["it", "hi:0", "it:0.5556", "te:0.4444"]  # top 2 of (.1, .5, .4), renormalised
    assert routing["utt3"][0] == read_map(out / "hyp_lang")["utt3"] == "it"
    stats = json.loads((out / "stats.json").read_text())
    assert stats["strategy"] == "threshold" and stats["tau"] == 0.6 and stats["top_k"] == 2
    assert stats["routed"] == {"one_adapter": 2, "mixture": 2, "no_adapter": 0}
    assert stats["routing_accuracy"] == 0.75 and stats["utterances"] == 4 and stats["ms_per_utterance"] > 0


def test_route_decode_hierarchical(setup: dict[str, Path], data: Path) -> None:
    families = data.parent / "families.yaml"
    families.write_text("hi: Indo-Aryan\nte: Dravidian\nit: Romance\n")
    out = data.parent / "hierarchical"
    args = _args(setup, data, out, "hierarchical", "--tau", "0.6", "--families", str(families),
                 "--feats_scp", str(setup["scp"]))
    assert route_decode.main(args) == 0
    routing = {utt: value.split() for utt, value in read_map(out / "routing").items()}
    assert routing["utt0"] == ["hi", "hi:1", "it:0", "te:0"]
    assert routing["utt1"] == ["it", "hi:0.1", "it:0.5", "te:0.4"]  # no family reaches 0.6: all mixed
    stats = json.loads((out / "stats.json").read_text())
    assert stats["strategy"] == "hierarchical" and stats["tau"] == 0.6
    families.write_text("hi: Indo-Aryan\nit: Romance\n")
    assert route_decode.main([*args[:-2], "--out_dir", str(out)]) == 1  # te has no family


def test_route_decode_oracle_and_base_match_plain_decoding(setup: dict[str, Path], data: Path) -> None:
    """Oracle on a one-language set == whisper_decode with that adapter; base == Whisper without adapters."""
    write_map(data / "utt2lang", dict.fromkeys(TRUTH, "it"))
    feats = ["--feats_scp", str(setup["scp"])]
    common = ["--data_dir", str(data), "--whisper_model", str(setup["tiny"]), "--max_new_tokens", "6", *feats]
    for strategy, plain in (("oracle", ["--adapter_dir", str(setup["it"])]), ("base", ["--lang_mode", "auto"])):
        assert route_decode.main(_args(setup, data, data.parent / strategy, strategy, *feats)) == 0
        assert whisper_decode.main([*common, *plain, "--out_dir", str(data.parent / f"plain_{strategy}")]) == 0
        for name in ("hyp", "hyp_lang"):
            assert (data.parent / strategy / name).read_text() == (data.parent / f"plain_{strategy}" / name).read_text()
    assert read_map(data.parent / "base" / "routing")["utt0"].endswith("hi:0 it:0 te:0")


def test_route_decode_from_the_encoder_cache(setup: dict[str, Path], data: Path) -> None:
    cache = data.parent / "cache"
    assert cache_encoder.main(["--feats_scp", str(setup["scp"]), "--whisper_model", str(setup["tiny"]),
                               "--out_dir", str(cache), "--shard", "1"]) == 0
    decoder_only = {"hi": setup["dec_hi"], "it": setup["dec_it"]}
    out = data.parent / "hard"
    write_map(data / "posteriors", {utt: "hi:0.2 it:0.8" for utt in TRUTH})
    assert route_decode.main(_args(setup, data, out, "hard", "--encoder_cache", str(cache), adapters=decoder_only)) == 0
    assert set(read_map(out / "hyp_lang").values()) == {"it"}
    assert json.loads((out / "stats.json").read_text())["routing_accuracy"] == 0.25  # te needs no adapter to be scored
    args = route_decode.get_parser().parse_args(_args(setup, data, out, "oracle", "--encoder_cache", str(cache)))
    with pytest.raises(UserInputError, match=rf"{setup['hi']}: the adapter changes encoder weights"):
        route_decode.run(args)


@pytest.mark.parametrize(
    ("strategy", "table", "content", "message"),
    [
        ("soft", "posteriors", {**POSTERIORS, "utt1": "hi:0.5 pa:0.5"}, r"posteriors:2: utt1: no adapter for .* 'pa'"),
        ("oracle", "utt2lang", {**TRUTH, "utt2": "pa"}, r"utt2lang:3: utt2: no adapter for language 'pa'"),
        ("hard", "posteriors", {**POSTERIORS, "utt0": "hi:1.5"}, r"posteriors:1: utt0: expected lang:probability in"),
        ("hard", "posteriors", {**POSTERIORS, "utt0": "hi:0.5 hi:0.5"}, r"posteriors:1: utt0: language hi given twice"),
    ],
)
def test_route_decode_names_the_bad_line(
    setup: dict[str, Path], data: Path, strategy: str, table: str, content: dict[str, str], message: str
) -> None:
    write_map(data / table, content)
    out = data.parent / "out"
    args = route_decode.get_parser().parse_args(_args(setup, data, out, strategy, "--feats_scp", str(setup["scp"])))
    with pytest.raises(UserInputError, match=rf"{data}/{message}"):
        route_decode.run(args)
    assert not out.exists()


def test_route_decode_option_errors(setup: dict[str, Path], data: Path) -> None:
    parser = route_decode.get_parser()
    out = data.parent / "out"
    args = parser.parse_args(_args(setup, data, out, "soft"))
    args.posteriors = None
    with pytest.raises(UserInputError, match="--strategy soft needs --posteriors"):
        route_decode.run(args)
    for extra, message in ((["--top_k", "4"], r"--top_k 4: must be in 1\.\.3"), (["--tau", "1.5"], r"--tau 1\.5")):
        with pytest.raises(UserInputError, match=message):
            route_decode.run(parser.parse_args(_args(setup, data, out, "threshold", *extra)))
    with pytest.raises(UserInputError, match=r"--adapter hi= given twice"):
        route_decode.run(parser.parse_args([*_args(setup, data, out, "hard"), "--adapter", f"hi={setup['it']}"]))
    with pytest.raises(SystemExit):
        parser.parse_args([*_args(setup, data, out, "hard"), "--adapter", "hi"])


def test_the_loop_fallback_keeps_each_rows_routing(routed: torch.nn.Module, setup: dict[str, Path]) -> None:
    """Only the rows that loop are decoded again: the routing weights must follow those rows (it crashed before)."""
    from espnet_adapters.whisper.decode import compression_ratio, decode_rows

    tokenizer = WhisperProcessor.from_pretrained(setup["tiny"]).tokenizer
    features = torch.randn(3, 80, 3000, generator=torch.Generator().manual_seed(2))
    langs = ["hi", "it", "te"]
    greedy = DecodeOptions(max_new_tokens=24, compression_ratio_threshold=None)
    with RoutingWeights(routed, MIXTURES):
        first = [compression_ratio(r.text) for r in decode_rows(routed, tokenizer, input_features=features,
                                                                   languages=langs, opts=greedy)]
    assert len(set(first)) > 1, first  # the fixture must give rows that a threshold can tell apart
    threshold = sorted(first)[0] + 1e-6  # every row but the least repetitive one falls back
    opts = DecodeOptions(max_new_tokens=24, compression_ratio_threshold=threshold, temperatures=(0.0, 0.5, 1.0))

    def decode(rows: list[int]) -> list:
        weights = MIXTURES[rows]
        return decode_rows(routed, tokenizer, input_features=features[rows], languages=[langs[r] for r in rows],
                           opts=opts, row_context=lambda pending: RoutingWeights(routed, weights[pending]))

    batch = decode([0, 1, 2])
    assert sum(row.attempts > 1 for row in batch) == 2  # a subset of the batch was decoded again
    assert [(r.tokens, r.attempts) for r in batch] == [(r.tokens, r.attempts) for k in range(3) for r in decode([k])]
