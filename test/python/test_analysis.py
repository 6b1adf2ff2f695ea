"""The weight analysis of language adapters: cosine, effective ranks, the CLI on tiny adapters."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from espnet_adapters.analysis.weights import (
    analyse,
    cosine,
    energy_rank,
    entropy_rank,
    family_summary,
    load_adapter_weights,
    module_group,
    singular_values,
)
from espnet_adapters.bin import analyze_adapters, check_configs
from espnet_adapters.data.families import read_families
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.lora import LoraSpec
from test_encoder_cache import make_tiny_whisper
from test_routing import make_lang_adapter

REPO = Path(__file__).resolve().parents[2]


def test_cosine_of_identical_opposite_and_orthogonal_deltas() -> None:
    delta = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    assert cosine(delta, delta.clone()) == pytest.approx(1.0, abs=1e-12)
    assert cosine(delta, -2.5 * delta) == pytest.approx(-1.0, abs=1e-12)
    first, second = torch.zeros(4, 4), torch.zeros(4, 4)
    first[0, 0], second[1, 1] = 3.0, -1.0
    assert cosine(first, second) == 0.0
    assert cosine(first, torch.zeros(4, 4)) == 0.0


@pytest.mark.parametrize("k", [1, 3, 8])
def test_effective_ranks_of_a_rank_k_product_are_at_most_k(k: int) -> None:
    generator = torch.Generator().manual_seed(k)
    delta = torch.randn(64, k, generator=generator) @ torch.randn(k, 48, generator=generator)
    sigma = singular_values(delta)
    assert entropy_rank(sigma[:k]) <= k + 1e-9 and energy_rank(sigma[:k]) <= k
    assert entropy_rank(sigma[:k]) > 0.5 and energy_rank(sigma) >= 1


def test_effective_ranks_of_known_spectra() -> None:
    assert entropy_rank(torch.tensor([2.0, 2.0, 2.0, 2.0])) == pytest.approx(4.0)
    assert entropy_rank(torch.tensor([5.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert energy_rank(torch.tensor([3.0, 1.0, 1.0])) == 2  # 9/11 < 0.9 <= 10/11
    assert energy_rank(torch.tensor([3.0, 0.5, 0.1])) == 1  # 9/9.26 >= 0.9
    assert entropy_rank(torch.zeros(3)) == 0.0 and energy_rank(torch.zeros(3)) == 0


def test_module_groups() -> None:
    assert module_group("model.decoder.layers.3.encoder_attn.q_proj") == ("decoder cross-attn q", 3, "q")
    assert module_group("model.encoder.layers.5.self_attn.v_proj") == ("encoder self-attn v", 5, "v")
    assert module_group("model.decoder.layers.0.fc1") == ("decoder fc1", 0, "fc1")


@pytest.fixture(scope="module")
def tiny_adapters(tmp_path_factory: pytest.TempPathFactory, whisper_base_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("analysis")
    tiny = make_tiny_whisper(root / "tiny", whisper_base_dir)
    spec = LoraSpec(r=4, lora_alpha=8, where="both")
    paths = {"tiny": tiny, "hi": make_lang_adapter(tiny, root / "hi", "hi", spec, seed=1),
             "it": make_lang_adapter(tiny, root / "it", "it", spec, seed=2)}
    paths["hi_copy"] = Path(shutil.copytree(paths["hi"], root / "hi_copy"))
    paths["dec"] = make_lang_adapter(tiny, root / "dec", "te", LoraSpec(r=4, lora_alpha=8), seed=3)
    return paths


def test_an_adapter_is_identical_to_its_copy_and_not_to_another(tiny_adapters: dict[str, Path]) -> None:
    weights = load_adapter_weights(str(tiny_adapters["tiny"]), {
        "hi": tiny_adapters["hi"], "pa": tiny_adapters["hi_copy"], "it": tiny_adapters["it"]})
    result = analyse(weights)
    assert result.langs == ["hi", "pa", "it"] and len(result.modules) > 4
    assert result.whole["hi-pa"] == pytest.approx(1.0, abs=1e-9)
    assert result.a_cosine["hi-pa"] == pytest.approx(1.0, abs=1e-9)
    assert abs(result.whole["hi-it"]) < 0.5 and result.whole["hi-it"] == pytest.approx(result.whole["pa-it"])
    assert all(value == pytest.approx(1.0) for value in (groups["hi-pa"] for groups in result.by_group.values()))
    # the delta is peft's scaling * B @ A, rank <= r: 4 singular values, ranks within 4
    module = result.modules[0]
    assert len(result.spectra["hi"][module]) == 4
    assert all(0 < value <= 4 for value in result.entropy_ranks["it"].values())
    assert all(1 <= value <= 4 for value in result.energy_ranks["it"].values())
    norm = weights.deltas[module]["hi"].double().norm()
    assert torch.tensor(result.spectra["hi"][module]).double().norm() == pytest.approx(float(norm), rel=1e-6)


def test_cli_writes_the_report_and_refuses_bad_adapters(tiny_adapters: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "exp" / "analysis"
    argv = ["--whisper_model", str(tiny_adapters["tiny"]), "--adapter", f"hi={tiny_adapters['hi']}",
            "--adapter", f"it={tiny_adapters['it']}", "--adapter", f"pa={tiny_adapters['hi_copy']}",
            "--out_dir", str(out), "--link_dir", str(tmp_path)]
    assert analyze_adapters.main(argv) == 0
    data = json.loads((out / "analysis.json").read_text(encoding="utf-8"))
    assert data["whole"]["hi-pa"] == pytest.approx(1.0, abs=1e-9) and data["ranks"] == {"hi": 4, "it": 4, "pa": 4}
    md = (out / "analysis.md").read_text(encoding="utf-8")
    assert "|hi|1.000|" in md and "Pairs, most similar first: hi-pa 1.000" in md
    assert "![similarity](exp/analysis/similarity.png)" in md
    assert (out / "similarity.png").stat().st_size > 1000 and (out / "spectra.png").stat().st_size > 1000
    # a missing adapter, and adapters of different presets, are errors (exit 1), not tracebacks
    missing = [*argv[:2], "--adapter", f"hi={tmp_path / 'nope'}", "--out_dir", str(tmp_path / "o2")]
    assert analyze_adapters.main(missing) == 1
    # ranks 4 and 8 of one language: deltas comparable, A matrices not (null, not NaN, in the JSON)
    other_rank = make_lang_adapter(tiny_adapters["tiny"], tmp_path / "r8", "hi", LoraSpec(r=8, lora_alpha=16, where="both"), 5)
    ranks = [*argv[:2], "--adapter", f"r4={tiny_adapters['hi']}", "--adapter", f"r8={other_rank}",
             "--out_dir", str(tmp_path / "ranks")]
    assert analyze_adapters.main(ranks) == 0
    data = json.loads((tmp_path / "ranks" / "analysis.json").read_text(encoding="utf-8"),
                      parse_constant=lambda name: pytest.fail(f"{name} in analysis.json"))
    assert data["a_cosine"] == {"r4-r8": None} and data["ranks"] == {"r4": 4, "r8": 8}
    assert -1 <= data["whole"]["r4-r8"] <= 1
    mixed = [*argv[:2], "--adapter", f"hi={tiny_adapters['hi']}", "--adapter", f"te={tiny_adapters['dec']}",
             "--out_dir", str(tmp_path / "o3")]
    assert analyze_adapters.main(mixed) == 1
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


# --- language families ------------------------------------------------------------------

def test_shipped_families_cover_the_recipe_languages() -> None:
    families = read_families(REPO / "conf" / "families.yaml")
    assert families["hi"] == families["pa"] == "Indo-Aryan" and families["te"] == "Dravidian"
    assert families["it"] == "Romance" and families["en"] == "Germanic"


@pytest.mark.parametrize(("text", "message"), [
    ("hi: Indo-Aryan\npa: Indo-Aryan\nhi: Dravidian\n", ":3: hi is given twice"),
    ("hi: Indo-Aryan\nHindi: Indo-Aryan\n", ":2: 'Hindi' is not a language code"),
    ("hi: Indo-Aryan\npa:\n", ":2: pa: expected a family name"),
    ("hi: [Indo-Aryan]\n", ":1: hi: expected a family name"),
    ("- hi\n", ": expected a mapping of language codes"),
    ("hi: [\n", ": invalid yaml"),
])
def test_bad_families_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "families.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserInputError, match=re.escape(f"{path}{message}")):
        read_families(path)
    assert check_configs.main(["--families", str(path)]) == 1


def test_family_summary_splits_the_pairs(tiny_adapters: dict[str, Path], tmp_path: Path) -> None:
    weights = load_adapter_weights(str(tiny_adapters["tiny"]), {
        "hi": tiny_adapters["hi"], "pa": tiny_adapters["hi_copy"], "it": tiny_adapters["it"]})
    result = analyse(weights)
    summary = family_summary(result, {"hi": "Indo-Aryan", "pa": "Indo-Aryan"})  # it: not in the table
    assert summary.within == {"hi-pa": pytest.approx(1.0)} and summary.across == {}
    assert summary.families == {"hi": "Indo-Aryan", "pa": "Indo-Aryan", "it": None}
    summary = family_summary(result, {"hi": "Indo-Aryan", "pa": "Indo-Aryan", "it": "Romance"})
    assert set(summary.across) == {"hi-it", "pa-it"} and summary.within_mean == pytest.approx(1.0)
    families = tmp_path / "families.yaml"
    families.write_text("hi: Indo-Aryan\npa: Indo-Aryan\nit: Romance\n", encoding="utf-8")
    argv = ["--whisper_model", str(tiny_adapters["tiny"]), "--adapter", f"hi={tiny_adapters['hi']}",
            "--adapter", f"it={tiny_adapters['it']}", "--adapter", f"pa={tiny_adapters['hi_copy']}",
            "--families", str(families), "--out_dir", str(tmp_path / "out")]
    assert analyze_adapters.main(argv) == 0
    md = (tmp_path / "out" / "analysis.md").read_text(encoding="utf-8")
    assert "Within a family: mean 1.000 (hi-pa 1.000)" in md and "among the 3 pairs (1 = most similar): hi-pa 1." in md
    data = json.loads((tmp_path / "out" / "analysis.json").read_text(encoding="utf-8"))
    assert data["family_summary"]["within"] == {"hi-pa": pytest.approx(1.0)}
