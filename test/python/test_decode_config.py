"""Decoding options as configs: conf/decode/*.yaml, and the flags that override them in every Whisper CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from espnet_adapters.bin import codeswitch_decode, route_decode, train_lora, whisper_decode
from espnet_adapters.utils.cli import UserInputError, make_parser
from espnet_adapters.whisper.decode import (
    DECODER_CHOSEN,
    SEARCH_OPTIONS,
    DecodeOptions,
    add_search_arguments,
    decode_options,
    iter_batches,
    load_decode_options,
    search_record,
)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_YAML = REPO / "conf" / "decode" / "default.yaml"


def _yaml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _options(argv: list[str], lang_mode: str = "forced") -> DecodeOptions:
    parser = make_parser(None)
    add_search_arguments(parser)
    return decode_options(parser.parse_args(argv), lang_mode)


def test_default_yaml_lists_every_option_with_the_dataclass_default() -> None:
    raw = yaml.safe_load(DEFAULT_YAML.read_text(encoding="utf-8"))
    assert list(raw) == list(SEARCH_OPTIONS)  # every search option, in the dataclass' order, and nothing else
    assert not set(raw) & set(DECODER_CHOSEN)
    loaded = DecodeOptions.from_yaml(DEFAULT_YAML)
    # The recipe's default differs from the library's in one measured choice: the decoder sees the speech + 1 s.
    assert loaded.as_dict() == {**DecodeOptions().as_dict(), "encoder_trim": 1.0} and loaded.source == str(DEFAULT_YAML)
    assert "source" not in loaded.as_dict() and DecodeOptions().encoder_trim is None
    for line in DEFAULT_YAML.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith((" ", "#")):
            assert "#" in line, f"no comment: {line}"


def test_flags_override_the_config_which_overrides_the_defaults(tmp_path: Path) -> None:
    config = _yaml(tmp_path / "beam.yaml", "beam_size: 4\nmax_new_tokens: 60\nencoder_trim: 0.5\n"
                                           "temperatures: [0, 0.5]\nseed: 9\n")
    assert _options([]) == DecodeOptions()  # no config, no flag: the dataclass defaults
    from_file = _options(["--decode_config", str(config)])
    assert (from_file.beam_size, from_file.max_new_tokens, from_file.encoder_trim) == (4, 60, 0.5)
    assert from_file.temperatures == (0.0, 0.5) and from_file.seed == 9
    assert from_file.batch_size == 8 and from_file.source == str(config)  # not in the file: the default
    both = _options(["--decode_config", str(config), "--beam_size", "2", "--batch_size", "3", "--seed", "1",
                     "--temperatures", "0", "--encoder_trim", "none"], lang_mode="auto")
    assert (both.beam_size, both.batch_size, both.seed, both.temperatures) == (2, 3, 1, (0.0,))  # given: they win
    assert both.max_new_tokens == 60  # not given: the config's
    assert both.encoder_trim is None  # "none" overrides a config's trim with the whole window
    assert both.lang_mode == "auto"
    # a flag given with the default's value still wins over the config
    assert _options(["--decode_config", str(config), "--beam_size", "1"]).beam_size == 1
    assert _options(["--encoder_trim", "1.5"]).encoder_trim == 1.5


def test_config_errors_name_the_file(tmp_path: Path) -> None:
    unknown = _yaml(tmp_path / "typo.yaml", "beam_sise: 4\n")
    with pytest.raises(UserInputError, match=rf"{unknown}: unknown key\(s\) beam_sise"):
        load_decode_options(unknown)
    chosen = _yaml(tmp_path / "lang.yaml", "lang_mode: auto\n")
    with pytest.raises(UserInputError, match=rf"{chosen}: lang_mode is not a decode config key"):
        load_decode_options(chosen)
    bad = _yaml(tmp_path / "bad.yaml", "encoder_trim: -1\n")
    with pytest.raises(UserInputError, match=rf"{bad}: encoder_trim must be >= 0"):
        load_decode_options(bad)
    wrong_type = _yaml(tmp_path / "type.yaml", "beam_size: two\n")
    with pytest.raises(UserInputError, match=rf"{wrong_type}: beam_size: expected int"):
        load_decode_options(wrong_type)
    ok = _yaml(tmp_path / "ok.yaml", "max_new_tokens: 10\n")
    with pytest.raises(UserInputError, match=rf"decoding options \({ok} and the command line\): max_new_tokens"):
        _options(["--decode_config", str(ok), "--max_new_tokens", "0"])
    with pytest.raises(UserInputError, match=r"decoding options: beam_size and batch_size must be >= 1"):
        _options(["--beam_size", "0"])
    with pytest.raises(SystemExit):
        _options(["--encoder_trim", "soon"])


def test_every_whisper_cli_takes_the_config_and_the_flags(tmp_path: Path) -> None:
    config = _yaml(tmp_path / "d.yaml", "max_new_tokens: 33\nencoder_trim: 2\n")
    search = ["--decode_config", str(config), "--beam_size", "3", "--encoder_trim", "1"]
    parsers = {
        "whisper_decode": (whisper_decode.get_parser(), ["--data_dir", "d", "--out_dir", "o"]),
        "route_decode": (route_decode.get_parser(), ["--data_dir", "d", "--out_dir", "o", "--adapter", "hi=a",
                                                     "--strategy", "oracle"]),
        "codeswitch_decode": (codeswitch_decode.get_parser(), ["--data_dir", "d", "--lid_dir", "l", "--out_dir", "o",
                                                               "--adapter", "hi=a"]),
    }
    for name, (parser, required) in parsers.items():
        opts = decode_options(parser.parse_args([*required, *search, "--seed", "5"]), "forced")
        assert (opts.max_new_tokens, opts.beam_size, opts.encoder_trim, opts.seed) == (33, 3, 1.0, 5), name
    # train_lora: --seed seeds the training, --decode_seed the fallback; the batch is dev_batch_size
    args = train_lora.get_parser().parse_args(
        ["--lang", "hi", "--train_dir", "t", "--train_feats", "t.scp", "--dev_dir", "d", "--dev_feats", "d.scp",
         "--out_dir", "o", "--seed", "7", "--decode_seed", "3", *search])
    assert args.seed == 7
    opts = decode_options(args, "forced")
    assert (opts.seed, opts.max_new_tokens, opts.beam_size, opts.encoder_trim) == (3, 33, 3, 1.0)
    with pytest.raises(SystemExit):
        train_lora.get_parser().parse_args(["--batch_size", "2"])


def test_batches_are_sorted_by_duration_within_a_language() -> None:
    langs = "hihhiihh"
    items = [(f"u{i}", None, lang) for i, lang in enumerate(langs)]
    durations = {f"u{i}": seconds for i, seconds in enumerate([5.0, 1.0, 3.0, 0.5, 2.0, 4.0, 9.0])}  # u7: unknown
    batches = list(iter_batches(items, DecodeOptions(batch_size=2), durations))
    assert [[utt for utt, _, _ in batch] for batch in batches] == [
        ["u3", "u2"], ["u0", "u6"], ["u7"],  # hi by duration, the unknown one last
        ["u1", "u4"], ["u5"],  # then i
    ]
    auto = list(iter_batches(items, DecodeOptions(batch_size=3, lang_mode="auto"), durations))
    assert [[utt for utt, _, _ in batch] for batch in auto] == [["u3", "u1", "u4"], ["u2", "u5", "u0"], ["u6", "u7"]]
    # without durations: the given order, as before
    assert [u for batch in iter_batches(items, DecodeOptions(batch_size=8, lang_mode="auto")) for u, _, _ in batch] \
        == [u for u, _, _ in items]


def test_options_record_every_field_but_the_file() -> None:
    opts = dataclasses.replace(DecodeOptions(), encoder_trim=0.25)
    recorded = opts.as_dict()
    assert list(recorded) == [*SEARCH_OPTIONS[:3], "lang_mode", *SEARCH_OPTIONS[3:]]
    assert recorded["encoder_trim"] == 0.25
    assert recorded["temperatures"] == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def test_search_record_names_the_config_and_what_differs_from_it(tmp_path: Path) -> None:
    """stats.json's decode_config / options_changed: what results names a decoding variant by."""
    config = _yaml(tmp_path / "fast.yaml", "beam_size: 4\ntemperatures: [0]\n")
    same = search_record(_options(["--decode_config", str(config), "--batch_size", "3"]))
    assert same["decode_config"] == "fast" and same["options_changed"] == {}  # batch size is not a rule
    assert same["options"]["beam_size"] == 4 and same["options"]["batch_size"] == 3
    changed = search_record(_options(["--decode_config", str(config), "--beam_size", "1", "--seed", "4"], "auto"))
    assert changed["options_changed"] == {"beam_size": 1, "seed": 4, "lang_mode": "auto"}
    builtin = search_record(_options(["--beam_size", "5"]))
    assert builtin["decode_config"] is None and builtin["options_changed"] == {"beam_size": 5}
