"""kill -9 at a random point of every stage, then the same command: the outputs of an uninterrupted run.

One recipe runs stages 1-8 once without interruption (Italian, a few utterances, 3 training
steps).  A second recipe runs the same command and is killed (SIGKILL) at a random moment after
each stage has begun (as a crash would: every process of the run, its jobs included), stage after
stage, each time re-running the same command; the last run is let finish.  Then both recipes must
hold the same data, features, adapter and hypotheses, with the same scores.  The random delays
come from a seed printed on failure.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import kaldiio
import numpy as np
from fixtures.recipe import new_recipe, recipe_env, run_recipe
from safetensors.numpy import load_file

REPO = Path(__file__).resolve().parents[2]
COMMAND = ("--train_utts", "3", "--dev_utts", "2", "--test_utts", "2", "--eval_langs", "", "--nj", "2",
           "--inference_nj", "1", "--train_config", str(REPO / "test/conf/train_smoke.yaml"),
           "--max_new_tokens", "40", "--stop_stage", "8")
STAGES = (1, 3, 4, 5, 6, 7, 8)  # stage 2 (speed perturbation) is off in this command
ADAPTER = "exp/whisper_base_lora_it_r32_qv_dec_train_smoke"


def _kill_session(run: subprocess.Popen) -> None:
    """SIGKILL every process of ``run``'s session: the stage script and its jobs (run.pl gives each
    job a process group of its own, so killing one group would leave the jobs running)."""
    while True:
        listing = subprocess.run(["ps", "-o", "pid=,stat=", "-s", str(run.pid)], capture_output=True, text=True,
                                 check=False).stdout
        pids = [int(pid) for pid, stat in (line.split() for line in listing.splitlines()) if "Z" not in stat]
        if not pids:
            run.wait()
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        run.poll()
        time.sleep(0.05)


def _kill_in_stage(recipe: Path, stage: int, delay: float) -> str:
    """Start the command; SIGKILL its process group ``delay`` s after stage ``stage`` logs its start."""
    log = recipe.parent / f"killed_in_{stage}.log"
    with open(log, "w", encoding="utf-8") as out:
        run = subprocess.Popen(["./run.sh", *COMMAND], cwd=recipe, env=recipe_env(), stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
    started = None
    deadline = time.monotonic() + 1200
    while run.poll() is None and time.monotonic() < deadline:
        if started is None and f"Stage {stage}:" in log.read_text(encoding="utf-8"):
            started = time.monotonic()
        if started is not None and time.monotonic() - started >= delay:
            _kill_session(run)
            break
        time.sleep(0.05)
    run.wait()
    text = log.read_text(encoding="utf-8")
    assert started is not None or run.returncode == 0, f"stage {stage} never started:\n{text[-3000:]}"
    return text


def _outputs(recipe: Path) -> dict[str, object]:
    """What the run produced, without paths or times: texts, features, adapter weights, hyps, scores."""
    found: dict[str, object] = {}
    for name in ("text", "utt2spk", "utt2lang"):
        for path in sorted((recipe / "data").glob(f"it_*/{name}")) + sorted((recipe / "dump/raw").glob(f"it_*/{name}")):
            found[str(path.relative_to(recipe))] = path.read_text(encoding="utf-8")
    for scp in sorted((recipe / "dump/raw").glob("it_*/wav.scp")):
        for utt, (rate, audio) in kaldiio.load_scp(str(scp)).items():
            found[f"{scp.relative_to(recipe)}:{utt}"] = (rate, audio.tobytes())
    for scp in sorted((recipe / "dump/whisper_base").glob("it_*/feats.scp")):
        for utt, feats in kaldiio.load_scp(str(scp)).items():
            found[f"{scp.relative_to(recipe)}:{utt}"] = np.asarray(feats).tobytes()
    weights = load_file(str(recipe / ADAPTER / "adapter/adapter_model.safetensors"))
    found["adapter"] = {name: value.tobytes() for name, value in sorted(weights.items())}
    for hyp in sorted((recipe / "exp").glob("*/decode_*/hyp")):
        found[str(hyp.relative_to(recipe))] = hyp.read_text(encoding="utf-8")
        scores = json.loads((hyp.parent / "score/scores.json").read_text(encoding="utf-8"))
        found[f"{hyp.parent.relative_to(recipe)}/score"] = (scores["wer"], scores["cer"], scores["corr"])
    return found


def test_kill_9_in_every_stage_then_resume(tmp_path: Path) -> None:
    reference = new_recipe(tmp_path / "reference" / "adapt1", "it")
    run_recipe(reference, *COMMAND)
    expected = _outputs(reference)
    assert any(key.endswith("/hyp") for key in expected) and "adapter" in expected

    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    recipe = new_recipe(tmp_path / "killed" / "adapt1", "it")
    for stage in STAGES:
        _kill_in_stage(recipe, stage, rng.uniform(0.0, 2.0))
    out = run_recipe(recipe, *COMMAND)
    assert "Successfully finished" in out
    got = _outputs(recipe)
    assert sorted(got) == sorted(expected), f"seed {seed}"
    differ = [key for key in expected if got[key] != expected[key]]
    assert not differ, f"seed {seed}: outputs differ from the uninterrupted run: {differ}"
    # and a re-run finds everything up to date
    again = run_recipe(recipe, *COMMAND)
    assert "cells to train" not in again and "hypotheses" not in again
