"""End to end: a fresh recipe dir (made like egs2/<lang>/adapt1) on a tiny setting.

Two languages, a few utterances: data prep -> format -> decode with the real
Whisper base -> score -> RESULTS.md; then a re-run skips every finished stage,
and a stage slice (--stage 5 --stop_stage 6) works on its own.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = ["--train_utts", "3", "--dev_utts", "2", "--test_utts", "4", "--nj", "2", "--inference_nj", "2"]


def _run(recipe: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    result = subprocess.run(
        ["./run.sh", *args], cwd=recipe, env=env, capture_output=True, text=True, timeout=1200, check=False
    )
    assert result.returncode == 0, f"run.sh failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recipe for hi + it, created by the template's setup.sh, run once on the tiny setting."""
    recipe = tmp_path_factory.mktemp("e2e") / "adapt1"
    subprocess.run([str(REPO / "egs2/TEMPLATE/adapt1/setup.sh"), str(recipe), "hi it"], check=True)
    _run(recipe, *TINY)
    return recipe


def test_data_dirs_are_kaldi_dirs(recipe: Path) -> None:
    for lang in ("hi", "it"):
        for split, count in (("train", 3), ("dev", 2), ("test", 4)):
            data = recipe / "data" / f"{lang}_{split}"
            for name in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2lang", "utt2dur", "spk2gender"):
                assert (data / name).is_file(), data / name
            assert len((data / "text").read_text(encoding="utf-8").splitlines()) == count
            dump = recipe / "dump" / "raw" / f"{lang}_{split}"
            assert len((dump / "wav.scp").read_text().splitlines()) == count


def test_decode_and_scores(recipe: Path) -> None:
    results = (recipe / "RESULTS.md").read_text(encoding="utf-8")
    row = next(line for line in results.splitlines() if line.startswith("|whisper_base|"))
    for lang in ("hi", "it"):
        decode = recipe / "exp" / "whisper_base" / f"decode_{lang}_test"
        hyp = (decode / "hyp").read_text(encoding="utf-8").splitlines()
        ref = (recipe / "dump" / "raw" / f"{lang}_test" / "text").read_text(encoding="utf-8").splitlines()
        assert [line.split()[0] for line in hyp] == [line.split()[0] for line in ref]
        scores = json.loads((decode / "score" / "scores.json").read_text())
        assert scores["num_utts"] == 4
        assert 0.0 <= scores["wer"] <= 1000.0 and 0.0 <= scores["cer"] <= 1000.0
        assert (decode / "score" / "result.txt").read_text(encoding="utf-8").count("REF:") == 4
        assert (decode / "logdir" / "decode.1.log").read_text().rstrip().splitlines()[-1].startswith("# Ended (code 0)")
        # The summary row shows exactly what the scoring stage measured.
        assert f"{scores['wer']:.1f} / {scores['cer']:.1f} (n=4)" in row


def test_rerun_skips_finished_stages(recipe: Path) -> None:
    hyp = recipe / "exp" / "whisper_base" / "decode_hi_test" / "hyp"
    before = hyp.stat().st_mtime_ns
    out = _run(recipe, *TINY, "--stop_stage", "5")
    assert out.count("up to date") >= 2 + 6 + 2  # 2 langs in stage 1, 6 sets in stage 2, 2 decodes
    assert hyp.stat().st_mtime_ns == before


def test_stage_slice_and_help(recipe: Path) -> None:
    scores = recipe / "exp" / "whisper_base" / "decode_it_test" / "score" / "scores.json"
    scores.unlink()
    out = _run(recipe, *TINY, "--stage", "3", "--stop_stage", "6")
    assert "Stage 1" not in out and "Stage 2" not in out and "Stage 6" in out
    assert scores.exists()
    help_text = subprocess.run(["./run.sh", "--help"], cwd=recipe, capture_output=True, text=True, check=False)
    assert help_text.returncode == 0
    assert "--stop_stage" in help_text.stdout + help_text.stderr
