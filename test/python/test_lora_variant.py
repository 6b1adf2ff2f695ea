"""lora_variant and LoraSpec.at_rank: a LoRA config at another rank (adapt.sh --lora_ranks).

The rule: the same scaling alpha/r at every rank, with an integer alpha.  A variant is
the source yaml with r and lora_alpha replaced, every other key as written, so the
files (and the training signatures that checksum them) are those the recipe wrote before.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from espnet_adapters.bin import lora_variant
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.lora import LoraSpec

CONF_LORA = Path(__file__).resolve().parents[2] / "conf" / "lora"


def test_at_rank_keeps_alpha_over_r() -> None:
    spec = LoraSpec(r=32, lora_alpha=64, target_modules=("q_proj",), where="both", source="x.yaml")
    for rank, alpha in ((8, 16), (1, 2), (32, 64), (128, 256)):
        derived = spec.at_rank(rank)
        assert (derived.r, derived.lora_alpha) == (rank, alpha)
        assert derived.lora_alpha / derived.r == spec.lora_alpha / spec.r
        assert (derived.target_modules, derived.where, derived.source) == (("q_proj",), "both", "x.yaml")
    assert LoraSpec(r=16, lora_alpha=16).at_rank(4).lora_alpha == 4


@pytest.mark.parametrize(("spec", "rank", "message"), [
    (LoraSpec(r=32, lora_alpha=50, source="odd.yaml"), 8,
     "odd.yaml: lora_alpha 50 at r 32 scales to a fractional alpha at rank 8"),
    (LoraSpec(r=8, lora_alpha=16, source="r8.yaml"), 0, "r8.yaml: rank must be >= 1, got 0"),
])
def test_at_rank_refuses_what_peft_cannot_take(spec: LoraSpec, rank: int, message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        spec.at_rank(rank)


def test_variants_are_the_source_at_each_rank(tmp_path: Path) -> None:
    source = CONF_LORA / "r32_qv_dec.yaml"
    outs = {rank: tmp_path / "conf" / "lora" / f"r{rank}_qv_dec.yaml" for rank in (8, 16)}
    assert lora_variant.main(["--lora_config", str(source), *(f"{r}={p}" for r, p in outs.items())]) == 0
    written = yaml.safe_load(source.read_text(encoding="utf-8"))
    for rank, out in outs.items():
        text = out.read_text(encoding="utf-8")
        assert text.splitlines()[0] == f"# {source} at rank {rank} (--lora_ranks)"
        values = yaml.safe_load(text)
        assert list(values) == list(written)  # the source's keys, in its order
        assert values == {**written, "r": rank, "lora_alpha": 2 * rank}
        spec = LoraSpec.from_yaml(out)  # a valid preset
        assert (spec.r, spec.lora_alpha) == (rank, 2 * rank)
    assert sorted(p.name for p in outs[8].parent.iterdir()) == ["r16_qv_dec.yaml", "r8_qv_dec.yaml"]  # no temp files


def test_a_variant_is_byte_for_byte_what_the_recipe_wrote_before(tmp_path: Path) -> None:
    """The inline Python of adapt.sh wrote this file; its checksum is in the rank grid's .done markers."""
    source = tmp_path / "my.yaml"
    source.write_text("# a comment\nwhere: decoder\nr: 32\nlora_alpha: 64\ntarget_modules: [q_proj, v_proj]\n",
                      encoding="utf-8")
    out = tmp_path / "exp" / "r8.yaml"
    assert lora_variant.main(["--lora_config", str(source), f"8={out}"]) == 0
    assert out.read_text(encoding="utf-8") == (
        f"# {source} at rank 8 (--lora_ranks)\n"
        "where: decoder\nr: 8\nlora_alpha: 16\ntarget_modules:\n- q_proj\n- v_proj\n"
    )


def test_a_fractional_alpha_is_an_error_that_names_the_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = tmp_path / "odd.yaml"
    source.write_text("r: 32\nlora_alpha: 50\n", encoding="utf-8")
    out = tmp_path / "r8.yaml"
    with caplog.at_level(logging.ERROR):
        assert lora_variant.main(["--lora_config", str(source), f"8={out}"]) == 1
    assert f"{source}: lora_alpha 50 at r 32 scales to a fractional alpha at rank 8" in caplog.text
    assert not out.exists()


def test_an_invalid_source_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = tmp_path / "typo.yaml"
    source.write_text("r: 32\nlora_alhpa: 64\n", encoding="utf-8")
    with caplog.at_level(logging.ERROR):
        assert lora_variant.main(["--lora_config", str(source), f"8={tmp_path / 'r8.yaml'}"]) == 1
    assert "unknown key(s) lora_alhpa" in caplog.text


@pytest.mark.parametrize("bad", ["8", "eight=x.yaml", "8=", "-8=x.yaml"])
def test_a_malformed_variant_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        lora_variant.main(["--lora_config", str(CONF_LORA / "r32_qv_dec.yaml"), bad])
    assert exit_info.value.code == 2
    assert "RANK=OUT" in capsys.readouterr().err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        lora_variant.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--lora_config" in out and "RANK=OUT" in out and "alpha/r" in out
