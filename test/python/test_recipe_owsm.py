"""End to end, OWSM: a hi + it recipe with --model_family owsm on the tiny setting, stages 1-8.

Data -> S2T dirs -> a tiny OWSM trained and packed here (1 epoch) -> LoRA per language
through espnet2.bin.s2t_train (1 epoch) -> in-process decoding of base and adapters ->
scoring into RESULTS.md; a re-run finds every stage up to date; a LoRA training killed
mid-run resumes from ESPnet's checkpoint, and changed options start over.  Accuracy is
not the point (the model saw 12 utterances once); the files and checks are.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from fixtures.recipe import new_recipe, recipe_env, run_recipe
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "--model_family", "owsm", "--train_utts", "6", "--dev_utts", "2", "--test_utts", "3", "--eval_langs", "",
    "--owsm_tiny_epochs", "1", "--owsm_train_config", str(REPO / "test/conf/owsm_lora_smoke.yaml"),
    "--owsm_maxlenratio", "0.2", "--cross_eval", "false", "--inference_nj", "1", "--stop_stage", "8",
]
ADAPTERS = ("owsm_tiny_lora_hi_r32_qv_dec", "owsm_tiny_lora_it_r32_qv_dec")


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    recipe = new_recipe(tmp_path_factory.mktemp("owsm_e2e") / "adapt1", "hi it")
    run_recipe(recipe, *TINY, timeout=1800)
    return recipe


def test_s2t_dirs_and_packed_tiny_model(recipe: Path) -> None:
    for lang, token in (("hi", "<hin>"), ("it", "<ita>")):
        text = (recipe / "dump" / "owsm" / f"{lang}_test" / "text").read_text(encoding="utf-8").splitlines()
        assert len(text) == 3 and all(line.split()[1].startswith(f"{token}<asr><notimestamps>") for line in text)
        assert set((recipe / "dump" / "owsm" / f"{lang}_test" / "text.prev").read_text().split()[1::2]) == {"<na>"}
    with zipfile.ZipFile(recipe / "exp" / "owsm_tiny" / "owsm_tiny.zip") as pack:
        meta = yaml.safe_load(pack.read("meta.yaml"))
        assert {"s2t_train_config", "s2t_model_file"} <= set(meta["yaml_files"]) | set(meta["files"])
        assert {"exp/owsm_tiny/token_list/bpe.model", "exp/owsm_tiny/stats/train/feats_stats.npz"} <= set(pack.namelist())


def test_adapters_train_only_lora_and_are_decoded(recipe: Path) -> None:
    for name in ADAPTERS:
        exp = recipe / "exp" / name
        config = yaml.safe_load((exp / "train.yaml").read_text())
        assert config["use_adapter"] and config["save_strategy"] == "adapter_only"
        assert {"encoder", "decoder", "ctc"} <= set(config["freeze_param"])
        meta = yaml.safe_load((exp / "adapter" / "adapter.yaml").read_text())
        state = torch.load(exp / "adapter" / "adapter.pth", weights_only=True)
        assert all(key.endswith(("lora_A", "lora_B")) for key in state)
        assert sum(v.numel() for v in state.values()) == meta["lora_parameters"] == 2 * 2 * 2 * 32 * (128 + 128)
        lang = name.split("_lora_")[1][:2]
        hyp = (exp / f"decode_{lang}_test" / "hyp").read_text(encoding="utf-8").splitlines()
        assert len(hyp) == 3 and (exp / f"decode_{lang}_test" / "score" / "scores.json").is_file()
    results = (recipe / "RESULTS.md").read_text(encoding="utf-8")
    assert "|owsm_tiny|" in results and "owsm_tiny_lora_hi_r32_qv_dec" in results
    # The command that reproduces them: the whole run (stage selection left out), relative to the recipe.
    assert "- how to reproduce: `./adapt.sh --langs hi\\ it --model_family owsm --train_utts 6 " in results
    assert "--stop_stage" not in results and "- espnet version: `202511`" in results


def test_rerun_finds_every_stage_up_to_date(recipe: Path) -> None:
    out = run_recipe(recipe, *TINY, timeout=1800)
    for label in ("hi_test: up to date", "exp/owsm_tiny: up to date", f"exp/{ADAPTERS[0]}: up to date",
                  f"exp/{ADAPTERS[1]}/decode_it_test: up to date"):
        assert label in out


def test_options_owsm_cannot_honour_are_errors(recipe: Path) -> None:
    for args, message in (
        (["--num_nodes", "2"], "multi-node training is wired for Whisper only"),
        (["--owsm_model", "/nonexistent/owsm.zip", "--stage", "5", "--stop_stage", "5"], "/nonexistent/owsm.zip"),
    ):
        result = subprocess.run(["./run.sh", "--model_family", "owsm", *args], cwd=recipe, env=recipe_env(),
                                capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode != 0 and message in result.stdout + result.stderr, result.stdout[-2000:]


def _kill_process_groups_of(marker: str) -> int:
    """SIGKILL the process group of every process whose command line holds ``marker``; how many."""
    groups = set()
    for proc_dir in Path("/proc").iterdir():
        try:
            if proc_dir.name.isdigit() and marker.encode() in (proc_dir / "cmdline").read_bytes():
                groups.add(os.getpgid(int(proc_dir.name)))
        except (OSError, ProcessLookupError):
            continue
    for group in groups:
        os.killpg(group, signal.SIGKILL)
    return len(groups)


def test_killed_lora_training_resumes_and_changed_options_start_over(recipe: Path, tmp_path: Path) -> None:
    """kill -9 of the training and the recipe during epoch 2 of 3 (a lost machine): the same
    command resumes at epoch 2.  run.pl gives every task its own process group, so both are killed."""
    smoke = yaml.safe_load((REPO / "test/conf/owsm_lora_smoke.yaml").read_text())
    three_epochs = tmp_path / "lora_3_epochs.yaml"
    three_epochs.write_text(yaml.safe_dump({**smoke, "max_epoch": 3}))
    args = [*TINY, "--langs", "hi", "--stage", "6", "--stop_stage", "6", "--owsm_train_config", str(three_epochs)]
    cell_log = recipe / "exp" / "log" / "train_cells" / "train.1.log"
    exp = recipe / "exp" / ADAPTERS[0]
    proc = subprocess.Popen(["./run.sh", *args], cwd=recipe, env=recipe_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        if cell_log.exists() and "2/3epoch started" in cell_log.read_text(encoding="utf-8", errors="replace"):
            break
        time.sleep(0.1)
    assert _kill_process_groups_of(f"{ADAPTERS[0]}/espnet") == 1
    os.killpg(proc.pid, signal.SIGKILL)
    first = proc.communicate()[0]
    assert "made with other options: starting over" in first  # the fixture's run had 1 epoch
    assert (exp / "espnet" / "checkpoint.pth").is_file() and not (exp / ".done").exists(), first[-3000:]
    assert not (exp / "espnet" / "3epoch.pth").exists(), "the training finished before the kill"

    out = run_recipe(recipe, *args, timeout=1200)
    assert "starting over" not in out and (exp / ".done").is_file()
    log = (exp / "log" / "train.log").read_text(encoding="utf-8")
    assert "The training was resumed using" in log, log[-2000:]
    assert "1/3epoch started" not in log and "3/3epoch started" in log

    # Back to the fixture's options (1 epoch): a new run, not the 3-epoch one re-installed.
    out = run_recipe(recipe, *TINY, "--langs", "hi", "--stage", "6", "--stop_stage", "6", timeout=1200)
    assert "made with other options: starting over" in out
    assert "1/1epoch started" in (exp / "log" / "train.log").read_text(encoding="utf-8")
