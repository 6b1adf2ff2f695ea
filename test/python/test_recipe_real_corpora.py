"""The recipe's stage 1 on real corpora: fixture trees in native layouts, db.sh variables.

A fresh Hindi recipe (as egs2/hindi/adapt1) with KATHBATH, COMMONVOICE and FLEURS
pointing at tiny fixture trees runs ``--corpus mix`` (conf/data/hi.yaml: Kathbath
0.8 + Common Voice 0.2, FLEURS as an extra test set) through stage 3: the mixed
training set, per-source dev/test, the pooled test set with its categories, and the
formatted audio (m4a, mp3 and wav decoded by stage 3) all exist and validate; no
speaker or sentence is shared between train and the held-out sets.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from fixtures import commonvoice, fleurs, kathbath
from fixtures.recipe import new_recipe, recipe_env

from espnet_adapters.data.kaldi import read_map, validate_data_dir
from espnet_adapters.scoring.normalize import normalize_text

REPO = Path(__file__).resolve().parents[2]


def _run(recipe: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["./run.sh", *args], cwd=recipe, env=env, capture_output=True, text=True, timeout=900, check=False
    )


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("corpora")
    return {
        "KATHBATH": str(kathbath.build(root / "kathbath", "hi")),
        "COMMONVOICE": str(commonvoice.build(root / "cv", "hi")),
        "FLEURS": str(fleurs.build(root / "fleurs", "hi")),
    }


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory, corpora: dict[str, str]) -> Path:
    recipe = new_recipe(tmp_path_factory.mktemp("real") / "adapt1", "hi")
    env = recipe_env() | corpora
    result = _run(recipe, env, "--corpus", "mix", "--eval_langs", "", "--stop_stage", "3")
    assert result.returncode == 0, f"run.sh failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return recipe


def test_mixture_follows_the_weights(recipe: Path) -> None:
    train = recipe / "data" / "hi_train"
    assert validate_data_dir(train, check_audio=True) == []
    categories = list(read_map(train / "utt2category").values())
    total = len(categories)
    assert total >= 5
    for source, weight in (("kathbath", 0.8), ("commonvoice", 0.2)):
        assert abs(categories.count(source) - weight * total) <= 1, (source, categories)
    stats = json.loads((train / "stats.json").read_text())
    assert stats["utterances"] == total and stats["hours"] > 0


def test_held_out_sets_are_per_source_and_pooled(recipe: Path) -> None:
    data = recipe / "data"
    for corpus in ("kathbath", "commonvoice"):
        for split in ("train", "dev", "test"):
            assert validate_data_dir(data / f"{corpus}_hi_{split}", check_audio=True) == []
    assert validate_data_dir(data / "fleurs_hi_test", check_audio=True) == []
    assert not (data / "fleurs_hi_train").exists()
    pooled = read_map(data / "hi_test" / "utt2category")
    assert set(pooled.values()) == {"kathbath", "commonvoice", "fleurs"}
    assert len(pooled) == sum(len(read_map(data / f"{c}_hi_test" / "text")) for c in ("kathbath", "commonvoice", "fleurs"))
    assert set(read_map(data / "hi_dev" / "utt2category").values()) <= {"kathbath", "commonvoice"}


def test_no_speaker_or_sentence_shared_with_training(recipe: Path) -> None:
    data = recipe / "data"
    train_spk = set(read_map(data / "hi_train" / "utt2spk").values())
    train_txt = {normalize_text(t, "hi") for t in read_map(data / "hi_train" / "text").values()}
    for held_out in ("hi_dev", "hi_test"):
        assert not train_spk & set(read_map(data / held_out / "utt2spk").values())
        assert not train_txt & {normalize_text(t, "hi") for t in read_map(data / held_out / "text").values()}


def test_later_stages_read_every_format(recipe: Path) -> None:
    """Stage 3 decoded m4a (Kathbath), mp3 (Common Voice) and wav (FLEURS) into 16 kHz arks."""
    for split in ("train", "dev", "test"):
        data = recipe / "data" / f"hi_{split}"
        formatted = recipe / "dump" / "raw" / f"hi_{split}"
        assert read_map(formatted / "text").keys() == read_map(data / "text").keys()
        assert (formatted / "utt2category").is_file()


def test_unset_corpus_variable_is_named(recipe: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KATHBATH", "COMMONVOICE", "FLEURS")}
    result = _run(recipe, env, "--corpus", "mix", "--eval_langs", "", "--stop_stage", "1",
                  "--data_config", str(REPO / "conf/data/it.yaml"), "--expdir", "exp_unset")
    assert result.returncode != 0
    log = (recipe / "exp_unset" / "log" / "data_prep_hi.log").read_text(encoding="utf-8")
    assert "MLS is not set: point it at the mls corpus in db.sh" in log


@pytest.mark.parametrize("lang", ["it", "pa", "te"])
def test_other_languages_mix_their_corpora(lang: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """conf/data/<lang>.yaml: Italian MLS + Common Voice, Punjabi and Telugu Kathbath + Common Voice, FLEURS test."""
    from fixtures import mls

    from espnet_adapters.bin import prepare_lang

    first = {"it": ("MLS", mls.build), "pa": ("KATHBATH", kathbath.build), "te": ("KATHBATH", kathbath.build)}[lang]
    monkeypatch.setenv(first[0], str(first[1](tmp_path / "first", lang)))
    monkeypatch.setenv("COMMONVOICE", str(commonvoice.build(tmp_path / "cv", lang)))
    monkeypatch.setenv("FLEURS", str(fleurs.build(tmp_path / "fleurs", lang)))
    data = tmp_path / "data"
    assert prepare_lang.main(["--lang", lang, "--config", str(REPO / f"conf/data/{lang}.yaml"),
                              "--data_dir", str(data)]) == 0
    for split in ("train", "dev", "test"):
        assert validate_data_dir(data / f"{lang}_{split}", check_audio=True) == []
    assert set(read_map(data / f"{lang}_train" / "utt2category").values()) == {first[0].lower(), "commonvoice"}
    assert set(read_map(data / f"{lang}_test" / "utt2category").values()) == {first[0].lower(), "commonvoice", "fleurs"}
