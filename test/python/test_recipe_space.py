"""A recipe in a directory whose path holds a space: the stage scripts quote every path.

The recipe is made by setup.sh under ``.../x y/adapt1`` and run through stage 4 (data,
format, features) on one language, with its experiment dir, LoRA config (and the rank
variants derived from it) and training config also under paths with a space, so that
every path the shell passes around holds one.  A re-run finds every stage up to date, and
the skipped stages say why.

Kaldi's list files (wav.scp, feats.scp) hold absolute paths separated by whitespace, so
audio and features cannot live under such a path (validate_data_dir refuses them): here
they sit on scratch storage, as on a cluster, through ``--dumpdir`` and a ``downloads``
symlink (the synthetic corpus's audio).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.recipe import new_recipe, run_recipe

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def spaced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], str]:
    """The recipe, its options, and the output of its first run (stages 1-4)."""
    root = tmp_path_factory.mktemp("space")
    recipe = new_recipe(root / "x y" / "adapt1", "it")
    scratch = root / "scratch"
    (scratch / "downloads").mkdir(parents=True)
    (recipe / "downloads").symlink_to(scratch / "downloads")
    conf = recipe / "my conf"
    conf.mkdir()
    for source in (REPO / "conf/lora/r32_qv_dec.yaml", REPO / "test/conf/train_smoke.yaml"):
        (conf / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    args = [
        "--train_utts", "4", "--dev_utts", "2", "--test_utts", "2", "--eval_langs", "",
        "--dumpdir", str(scratch / "dump"), "--expdir", str(recipe / "my exp"),
        "--lora_config", str(conf / "r32_qv_dec.yaml"), "--train_config", str(conf / "train_smoke.yaml"),
        "--lora_ranks", "8 16",
    ]
    return recipe, args, run_recipe(recipe, *args, "--stop_stage", "4")


def test_stages_1_to_4_run_under_a_path_with_a_space(spaced: tuple[Path, list[str], str]) -> None:
    recipe, _, out = spaced
    assert " " in str(recipe)
    assert "Successfully finished" in out
    for split, count in (("train", 4), ("dev", 2), ("test", 2)):
        assert len((recipe / "data" / f"it_{split}" / "text").read_text(encoding="utf-8").splitlines()) == count
        feats = recipe.parent.parent / "scratch" / "dump" / "whisper_base" / f"it_{split}"
        assert len((feats / "feats.scp").read_text().splitlines()) == count and (feats / ".done").is_file()
    exp = recipe / "my exp"
    assert (exp / "log" / "data_prep_it.log").read_text().rstrip().splitlines()[-1].startswith("# Ended (code 0)")
    assert (exp / "format" / "it_dev" / "combine.log").is_file()
    # --lora_ranks: the config (in "my conf") at each rank, written into "my exp".
    for rank in (8, 16):
        variant = exp / "conf" / "lora" / f"r{rank}_qv_dec_train_smoke.yaml"
        assert f"r: {rank}\nlora_alpha: {2 * rank}\n" in variant.read_text(encoding="utf-8")


def test_skipped_stages_say_why(spaced: tuple[Path, list[str], str]) -> None:
    recipe, args, out = spaced
    assert ") Skip stage 2: training-set augmentation: no --speed_perturb_factors, no --augment_config" in out
    out = run_recipe(recipe, *args, "--stage", "9")
    for stage, what in ((9, "language ID"), (10, "routing"), (11, "code-switching")):
        assert f") Skip stage {stage}: {what} needs two or more --langs" in out
    assert ") Skip stage 12: " in out


def test_a_rerun_finds_every_stage_up_to_date(spaced: tuple[Path, list[str], str]) -> None:
    recipe, args, _ = spaced
    out = run_recipe(recipe, *args, "--stop_stage", "4")
    logged = [line for line in out.splitlines() if "(adapt.sh:" in line]
    assert len([line for line in logged if line.endswith(": up to date")]) == 1 + 4 + 4  # stage 1: it; 3, 4: 4 sets (test_other)
    assert not [line for line in logged if "utterances" in line]  # nothing prepared, formatted or dumped again
