"""End to end: a fresh recipe dir (made like egs2/<lang>/adapt1) on a tiny setting.

Two languages (and English, evaluated only), a few utterances, every stage with
the real Whisper base: data prep -> speed perturbation -> format -> features ->
encoder cache -> a few LoRA steps per language -> decoding (base, own adapter,
cross-language) -> scoring -> language ID -> routing (5 strategies, tau on dev) ->
code-switched sets -> RESULTS.md; then a re-run skips every finished
stage, and a stage slice works on its own.  With a real single-node SLURM
(tools/slurm/start.sh): stages 3-4 under cmd_backend=slurm give the local outputs,
and a 2 languages x 2 ranks training grid runs as one job array, a re-run after
losing one cell redoes only that cell.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import yaml
from fixtures.recipe import new_recipe, run_recipe

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "--train_utts", "3", "--dev_utts", "2", "--test_utts", "4", "--nj", "2", "--inference_nj", "2",
    "--speed_perturb_factors", "0.9 1.0", "--train_config", str(REPO / "test/conf/train_smoke.yaml"),
    "--max_new_tokens", "40", "--route_taus", "0.5 0.9", "--lid_crops", "1", "--cs_utts", "2",
]
ADAPTERS = ("whisper_base_lora_hi_r32_qv_dec_train_smoke", "whisper_base_lora_it_r32_qv_dec_train_smoke")


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recipe for hi + it, created by the template's setup.sh, run once on the tiny setting."""
    recipe = new_recipe(tmp_path_factory.mktemp("e2e") / "adapt1", "hi it")
    run_recipe(recipe, *TINY)
    return recipe


def test_data_dirs_are_kaldi_dirs(recipe: Path) -> None:
    for lang in ("hi", "it"):
        for split, count in (("train", 3), ("dev", 2), ("test", 4), ("test_other", 4)):
            data = recipe / "data" / f"{lang}_{split}"
            for name in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2lang", "utt2dur", "spk2gender"):
                assert (data / name).is_file(), data / name
            assert len((data / "text").read_text(encoding="utf-8").splitlines()) == count
        # Speed perturbation doubles the training set (factors 0.9 and 1.0); it is what is trained on.
        for name, count in ((f"{lang}_train_sp", 6), (f"{lang}_dev", 2), (f"{lang}_test", 4)):
            assert len((recipe / "dump" / "raw" / name / "wav.scp").read_text().splitlines()) == count
            feats = recipe / "dump" / "whisper_base" / name
            assert len((feats / "feats_shape").read_text().splitlines()) == count
            assert (recipe / "dump" / "whisper_base" / "encoder" / name / "fingerprint.json").is_file()
        # test_other (default --test_sets "test test_other"): the test sentences by another synthesizer.
        ids = lambda name: [line.split()[0].split("-")[1] for line in  # noqa: E731
                            (recipe / "data" / f"{lang}_{name}" / "text").read_text(encoding="utf-8").splitlines()]
        assert sorted(ids("test_other")) == sorted(ids("test"))
        assert (recipe / "dump" / "whisper_base" / f"{lang}_test_other" / "feats_shape").is_file()
    # English is evaluated only: its first test set, no training, dev or other test set.
    assert (recipe / "data" / "en_test" / "text").is_file() and not (recipe / "data" / "en_train").exists()
    assert not (recipe / "data" / "en_test_other").exists()


def test_adapters_are_trained_in_peft_layout(recipe: Path) -> None:
    for adapter in ADAPTERS:
        exp = recipe / "exp" / adapter
        assert (exp / "adapter" / "adapter_config.json").is_file()
        assert (exp / "adapter" / "adapter_model.safetensors").is_file()
        stats = json.loads((exp / "train_stats.json").read_text())
        assert stats["trainable_params"] > 0
        assert (exp / "log" / "train.log").read_text().rstrip().splitlines()[-1].startswith("# Ended (code 0)")


def test_decode_and_scores(recipe: Path) -> None:
    results = (recipe / "RESULTS.md").read_text(encoding="utf-8")
    rows: dict[str, str] = {}
    for line in results.splitlines():  # the summary table's row of each model (its first row in RESULTS.md;
        if line.startswith("|whisper_base"):  # the adapter-training table further down names the runs too)
            rows.setdefault(line.split("|")[1], line)
    for model in ("whisper_base", *ADAPTERS):  # base, and each adapter on both languages (cross_eval)
        for lang in ("hi", "it", "en"):  # en: evaluated only (eval_langs), no adapter of its own
            decode = recipe / "exp" / model / f"decode_{lang}_test"
            hyp = (decode / "hyp").read_text(encoding="utf-8").splitlines()
            ref = (recipe / "dump" / "raw" / f"{lang}_test" / "text").read_text(encoding="utf-8").splitlines()
            assert [line.split()[0] for line in hyp] == [line.split()[0] for line in ref]
            scores = json.loads((decode / "score" / "scores.json").read_text())
            assert scores["num_utts"] == 4
            assert 0.0 <= scores["wer"] <= 1000.0 and 0.0 <= scores["cer"] <= 1000.0
            assert (decode / "score" / "result.txt").read_text(encoding="utf-8").count("REF:") == 4
            log = (decode / "logdir" / "decode.1.log").read_text()
            assert log.rstrip().splitlines()[-1].startswith("# Ended (code 0)")
            # The summary row shows exactly what the scoring stage measured.
            assert f"{scores['wer']:.1f} / {scores['cer']:.1f} (n=4)" in rows[model]
    # The other synthesizer's test set: the base model and each language's own adapter only.
    decoded = sorted(path.parent.name + "/" + path.name for path in (recipe / "exp").glob("*/decode_*_test_other"))
    assert decoded == sorted([f"{ADAPTERS[0]}/decode_hi_test_other", f"{ADAPTERS[1]}/decode_it_test_other",
                              "whisper_base/decode_hi_test_other", "whisper_base/decode_it_test_other"])
    for name in decoded:
        assert json.loads((recipe / "exp" / name / "score" / "scores.json").read_text())["num_utts"] == 4
    assert "## Adapters vs base" in results
    assert "hi_test_other" in results.split("## Adapters vs base")[1]


def test_rerun_skips_finished_stages(recipe: Path) -> None:
    hyp = recipe / "exp" / "whisper_base" / "decode_hi_test" / "hyp"
    adapter = recipe / "exp" / ADAPTERS[0] / "adapter" / "adapter_model.safetensors"
    before = hyp.stat().st_mtime_ns, adapter.stat().st_mtime_ns
    out = run_recipe(recipe, *TINY, "--stop_stage", "7")
    # stage 1: hi, it, en; 2: 2 train sets; 3, 4, 5: 9 sets each (hi, it: train_sp dev test test_other;
    # en: test); 6: 2 adapters; 7: 3 test sets x 3 models + 2 test_other sets x 2 models
    skipped = [line for line in out.splitlines() if "(adapt.sh:" in line and line.endswith("up to date")]
    assert len(skipped) == 3 + 2 + 3 * 9 + 2 + 9 + 4
    assert (hyp.stat().st_mtime_ns, adapter.stat().st_mtime_ns) == before


def test_stage_slice_and_help(recipe: Path) -> None:
    scores = recipe / "exp" / "whisper_base" / "decode_it_test" / "score" / "scores.json"
    scores.unlink()
    out = run_recipe(recipe, *TINY, "--stage", "7", "--stop_stage", "8")
    assert "Stage 6" not in out and "Stage 7" in out and "Stage 8" in out
    assert scores.exists()
    help_text = subprocess.run(["./run.sh", "--help"], cwd=recipe, capture_output=True, text=True, check=False)
    assert help_text.returncode == 0
    assert "--stop_stage" in help_text.stdout and "--lora_config" in help_text.stdout


def test_slurm_backend_gives_the_local_outputs(recipe: Path, slurm_env: dict[str, str]) -> None:
    out = run_recipe(recipe, *TINY, "--stage", "3", "--stop_stage", "4", "--dumpdir", "dump_slurm", env=slurm_env)
    assert "Stage 4" in out
    # Stages 3-4's sets (stage 11's code-switched sets live in dump/raw too).
    sets = sorted(p.name for p in (recipe / "dump" / "raw").iterdir() if p.is_dir() and not p.name.startswith("cs_"))
    assert len(sets) == 9  # hi, it: train_sp dev test test_other; en: test
    for name in sets:
        for file in ("text", "utt2spk", "utt2dur"):
            local = (recipe / "dump" / "raw" / name / file).read_text(encoding="utf-8")
            assert (recipe / "dump_slurm" / "raw" / name / file).read_text(encoding="utf-8") == local
        local_feats = dict(kaldiio.load_scp_sequential(str(recipe / "dump" / "whisper_base" / name / "feats.scp")))
        slurm_feats = dict(kaldiio.load_scp_sequential(str(recipe / "dump_slurm" / "whisper_base" / name / "feats.scp")))
        assert local_feats.keys() == slurm_feats.keys()
        for utt, feats in local_feats.items():
            np.testing.assert_array_equal(slurm_feats[utt], feats)
    # The jobs really went through sbatch: slurm.pl keeps its batch scripts in q/.
    assert list((recipe / "exp" / "format").glob("*/q/*.sh"))


def test_rank_grid_as_a_slurm_job_array(recipe: Path, slurm_env: dict[str, str]) -> None:
    grid = (*TINY, "--stage", "6", "--stop_stage", "6", "--lora_ranks", "2 4")
    timings = {}
    for backend, env in (("slurm", slurm_env), ("local", None)):
        started = time.perf_counter()
        out = run_recipe(recipe, *grid, "--expdir", f"exp_grid_{backend}", env=env)
        timings[backend] = time.perf_counter() - started
        assert "4 of 4 cells to train" in out and "cells: 0 up to date, 4 trained, 0 failed" in out
    print(f"2 x 2 training grid wall time: local {timings['local']:.1f} s, slurm {timings['slurm']:.1f} s")
    exp = recipe / "exp_grid_slurm"
    cells = sorted(exp.glob("whisper_base_lora_*_r*_qv_dec_train_smoke"))
    assert [c.name for c in cells] == [f"whisper_base_lora_{lang}_r{r}_qv_dec_train_smoke"
                                       for lang in ("hi", "it") for r in (2, 4)]
    for cell in cells:
        rank = int(cell.name.split("_r")[1].split("_")[0])
        assert json.loads((cell / "adapter" / "adapter_config.json").read_text())["r"] == rank
        assert (cell / "log" / "train.log").read_text().rstrip().splitlines()[-1].startswith("# Ended (code 0)")
    before = {c.name: (c / "train_stats.json").stat().st_mtime_ns for c in cells}
    # A cell that fails (its checkpoint is corrupt) is reported by name; the others are not redone.
    broken = cells[1]
    (broken / "train.done").unlink()
    (broken / ".done").unlink()
    (broken / "checkpoints" / "last" / "trainable.safetensors").write_bytes(b"not a checkpoint")
    failed = subprocess.run(["./run.sh", *grid, "--expdir", "exp_grid_slurm"], cwd=recipe, env=slurm_env,
                            capture_output=True, text=True, timeout=2400, check=False)
    assert failed.returncode != 0
    assert "1 of 4 cells to train" in failed.stdout and "cells: 3 up to date, 0 trained, 1 failed" in failed.stdout
    assert f"failed: {broken.relative_to(recipe)}" in failed.stderr
    # Lose that cell entirely (as a killed job would leave it): the re-run redoes only it.
    shutil.rmtree(broken)
    out = run_recipe(recipe, *grid, "--expdir", "exp_grid_slurm", env=slurm_env)
    assert "1 of 4 cells to train" in out and "cells: 3 up to date, 1 trained, 0 failed" in out
    after = {c.name: (c / "train_stats.json").stat().st_mtime_ns for c in cells}
    assert {name for name in before if before[name] != after[name]} == {broken.name}


def test_top_encoder_layers_preset(recipe: Path) -> None:
    """conf/lora/r32_qv_dec_enc2.yaml: stage 5 caches the states below the top 2 encoder layers (training
    sets only), stage 6 trains on them, stage 7 decodes the adapter from features, cut where it was trained."""
    enc_top = REPO / "conf/lora/r32_qv_dec_enc2.yaml"
    out = run_recipe(recipe, *TINY, "--langs", "hi", "--eval_langs", "", "--stage", "5", "--stop_stage", "8",
                     "--lora_config", str(enc_top), "--expdir", "exp_enc_top", "--results", "RESULTS_enc_top.md")
    assert "the states below the top 2 encoder layers" in out
    for split in ("hi_train_sp", "hi_dev"):
        fingerprint = recipe / "dump" / "whisper_base" / "encoder_top2" / split / "fingerprint.json"
        assert json.loads(fingerprint.read_text())["cut_layer"] == 4
    assert not (recipe / "dump" / "whisper_base" / "encoder_top2" / "hi_test").exists()
    exp = recipe / "exp_enc_top" / "whisper_base_lora_hi_r32_qv_dec_enc2_train_smoke"
    meta = json.loads((exp / "adapter" / "lora_meta.json").read_text())
    assert meta["encoder_cut_layer"] == 4 and meta["encoder_top"] == 2 and meta["encoder_trim"] == 1.0
    assert "--train_encoder_cache dump/whisper_base/encoder_top2/hi_train_sp" in (exp / "log" / "train.log").read_text()
    for model in ("whisper_base", exp.name):
        decode = recipe / "exp_enc_top" / model / "decode_hi_test"
        for job in (1, 2):
            stats = json.loads((decode / "logdir" / f"output.{job}" / "stats.json").read_text())
            assert stats["input"] == "feats_scp"
        assert json.loads((decode / "score" / "scores.json").read_text())["num_utts"] == 4
    assert "|hi_test|4|whisper_base|r32_qv_dec_enc2_train_smoke|" in (recipe / "RESULTS_enc_top.md").read_text()


def test_speech_span_preset(recipe: Path) -> None:
    """conf/decode/speech.yaml: stage 5 caches the encoder run on each utterance's speech + 1 s (entries of
    their own lengths), stage 6 trains a _speech1.0 adapter on it, stage 7 decodes base and adapter from it."""
    out = run_recipe(recipe, *TINY, "--langs", "it", "--eval_langs", "", "--stage", "5", "--stop_stage", "8",
                     "--decode_config", str(REPO / "conf/decode/speech.yaml"), "--expdir", "exp_speech",
                     "--results", "RESULTS_speech.md")
    assert "encoder_span speech" in out
    cache = recipe / "dump" / "whisper_base" / "encoder_speech1.0"
    assert json.loads((cache / "it_test" / "fingerprint.json").read_text())["speech_margin"] == 1.0
    durations = {line.split()[0]: float(line.split()[1])
                 for line in (recipe / "dump" / "raw" / "it_test" / "utt2dur").read_text().splitlines()}
    from espnet_adapters.whisper.encoder_cache import EncoderCache
    stored = EncoderCache(cache / "it_test", speech_margin=1.0)
    assert {utt: stored.frames(utt) for utt in durations} == {
        utt: int(np.ceil((seconds + 1.0) * 50)) for utt, seconds in durations.items()}
    exp = recipe / "exp_speech" / "whisper_base_lora_it_r32_qv_dec_train_smoke_speech1.0"
    meta = json.loads((exp / "adapter" / "lora_meta.json").read_text())
    assert meta["encoder_span"] == "speech" and meta["encoder_trim"] == 1.0
    for model in ("whisper_base", exp.name):
        decode = recipe / "exp_speech" / model / "decode_it_test_speech"
        stats = json.loads((decode / "logdir" / "output.1" / "stats.json").read_text())
        assert stats["input"] == "encoder_cache" and stats["options"]["encoder_span"] == "speech"
        assert json.loads((decode / "score" / "scores.json").read_text())["num_utts"] == 4
    assert "|it_test|4|whisper_base|r32_qv_dec_train_smoke_speech1.0|" in (recipe / "RESULTS_speech.md").read_text()


def test_lid_routing_and_codeswitching(recipe: Path) -> None:
    lid = recipe / "exp" / "whisper_base_lid_mlp_mean"
    assert json.loads((lid / "lid.json").read_text())["labels"] == ["hi", "it"]
    results = json.loads((lid / "eval_test" / "results.json").read_text())
    assert set(results["systems"]) == {"lid", "whisper", "majority"} and results["n"] == 8
    routing = recipe / "exp" / "whisper_base_routing_r32_qv_dec_train_smoke"
    tau = json.loads((routing / "tau_selection.json").read_text())
    # the chosen tau is the candidate of the lowest pooled dev WER (ties: the higher tau), each
    # candidate's WER the one its dev decode scored
    candidates = {item["tau"]: item["dev_wer"] for item in tau["candidates"]}
    assert sorted(candidates) == [0.5, 0.9]
    for value, wer in candidates.items():
        dev_scores = json.loads((routing / "dev" / f"threshold_tau{value:g}" / "score" / "scores.json").read_text())
        assert dev_scores["wer"] == wer
    assert tau["chosen"] == min(candidates, key=lambda value: (candidates[value], -value))
    test_utts = sorted(line.split()[0] for lang in ("hi", "it")
                       for line in (recipe / "dump" / "raw" / f"{lang}_test" / "text").read_text().splitlines())
    for strategy in ("oracle", "hard", "soft", "threshold", "hierarchical", "base"):
        hyp = (routing / strategy / "hyp").read_text(encoding="utf-8").splitlines()
        assert sorted(line.split()[0] for line in hyp) == test_utts  # the pooled test set, both languages
        scores = json.loads((routing / strategy / "score" / "scores.json").read_text())
        assert set(scores["by_category"]) == {"hi", "it"}
    # Oracle routing is the own-language adapter: the same hypotheses as stage 7's decodes.
    oracle = dict(line.split(maxsplit=1) for line in (routing / "oracle" / "hyp").read_text().splitlines() if " " in line)
    for lang, adapter in zip(("hi", "it"), ADAPTERS):
        own = (recipe / "exp" / adapter / f"decode_{lang}_test" / "hyp").read_text().splitlines()
        assert {k: v for k, v in (line.split(maxsplit=1) for line in own if " " in line)}.items() <= oracle.items()
    # The switch smoothing is chosen on dev code-switched sets (analysis only) and used on test.
    selection = json.loads((routing / "codeswitch" / "dev" / "smoothing.json").read_text())
    assert [Path(path).name for path in selection["sets"]] == ["cs_inter_dev", "cs_rapid_dev"]
    assert selection["chosen"] in [row["smoothing"] for row in selection["candidates"]]
    for kind in ("inter", "rapid"):
        assert (routing / "codeswitch" / f"cs_{kind}" / "segments" / "hyp").is_file()
        assert not (routing / "codeswitch" / "dev" / f"cs_{kind}_dev" / "segments" / "hyp").exists()
        stats = json.loads((routing / "codeswitch" / f"cs_{kind}" / "stats.json").read_text())
        assert stats["lid"]["smoothing"] == selection["chosen"]
    text = (recipe / "RESULTS.md").read_text(encoding="utf-8")
    for section in ("## Language ID", "## Adapter routing", "## Code-switched test sets",
                    "### Switch detection: smoothing chosen on dev"):
        assert section in text
    assert (routing / "routing.png").is_file() and (routing / "codeswitch" / "report" / "posteriors.png").is_file()
    # Stage 13: the adapters' weight analysis, from the same adapters as routing.
    analysis = recipe / "exp" / "whisper_base_analysis_r32_qv_dec_train_smoke"
    data = json.loads((analysis / "analysis.json").read_text(encoding="utf-8"))
    assert data["langs"] == ["hi", "it"] and set(data["whole"]) == {"hi-it"} and -1 <= data["whole"]["hi-it"] <= 1
    assert data["ranks"] == {"hi": 32, "it": 32}
    assert "## Adapter analysis: weights" in text
    assert "![similarity](exp/whisper_base_analysis_r32_qv_dec_train_smoke/similarity.png)" in text
    assert (analysis / "similarity.png").is_file() and (analysis / "spectra.png").is_file()


def test_export_with_cards_and_transcribe(recipe: Path, tmp_path: Path) -> None:
    """Stage 14 collects the routed adapters with model cards, the LID and tau; ./transcribe.sh (linked into
    the recipe by setup.sh) finds that export and transcribes a folder, naming the file it cannot read."""
    export = recipe / "exp" / "whisper_base_export_r32_qv_dec_train_smoke"
    manifest = json.loads((export / "manifest.json").read_text())
    tau = json.loads((recipe / "exp" / "whisper_base_routing_r32_qv_dec_train_smoke" / "tau_selection.json").read_text())
    assert sorted(manifest["adapters"]) == ["hi", "it"] and manifest["routing"]["tau"] == tau["chosen"]
    for lang, adapter in zip(("hi", "it"), ADAPTERS):
        card = (export / lang / "README.md").read_text(encoding="utf-8")
        header = yaml.safe_load(card.split("---\n")[1])
        assert header["language"] == [lang] and header["library_name"] == "peft"
        assert header["base_model"] == "openai/whisper-base"
        scores = {s: json.loads((recipe / "exp" / adapter / f"decode_{lang}_{s}" / "score" / "scores.json").read_text())
                  for s in ("test", "test_other")}
        results = {r["dataset"]["split"]: {m["type"]: m["value"] for m in r["metrics"]}
                   for r in header["model-index"][0]["results"]}
        assert results == {s: {"wer": round(v["wer"], 2), "cer": round(v["cer"], 2)} for s, v in scores.items()}
    folder = tmp_path / "audio"
    folder.mkdir()
    wav = (recipe / "data" / "hi_test" / "wav.scp").read_text().splitlines()[0].split(maxsplit=1)[1]
    shutil.copy(wav, folder / "clip.wav")
    (folder / "broken.flac").write_bytes(b"fLaC broken")
    result = subprocess.run(["./transcribe.sh", "--out_dir", str(tmp_path / "out"), "--max_new_tokens", "40",
                             str(folder)], cwd=recipe, capture_output=True, text=True, check=False)
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"{folder / 'broken.flac'}" in result.stderr and "1 file(s) failed" in result.stderr
    data = json.loads((tmp_path / "out" / "clip.json").read_text(encoding="utf-8"))
    assert data["route"] == "threshold" and len(data["segments"]) == 1
    assert sorted(data["segments"][0]["adapter_weights"]) == ["hi", "it"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.json", "clip.srt", "clip.txt", "clip.vtt"]
