"""Data-parallel training: 2 gloo processes on the CPU train what 1 process trains, and resume after kill -9.

The 2-process run is started by the torchrun command that ``--ddp_cpu_procs 2``
makes the entry point exec (checked apart, by catching the exec: a relaunch
would import everything once more, ~8 s here), killed with SIGKILL (launcher
and workers) after its first checkpoint, and run again as after a crash: every
rank loads the checkpoint.  Without LoRA dropout and
SpecAugment no random number is drawn while training, so the per-step
(global mean) losses, the dev losses, the optimizer's gradient moments and
the final LoRA weights must match the single-process run's up to float
summation order.  Global batches of 5 of the 6 utterances give uneven slices
(3 + 2) and, at each epoch's end, an empty one (1 + 0); ``grad_accum: 2``
exercises DDP's ``no_sync``.

Tolerances: the losses agree to about 1e-7 relative and the moments (linear
in the gradients, so they would show any error in the loss weights or
scale) to about 1e-6 of their largest element.  The weights typically agree
to 1e-5 of one Adam step (lr), but not uniformly: Adam divides each gradient
element by its own RMS, so an element whose gradient is a sum that nearly
cancels turns that sum's float noise into a sizeable part of a step (1e-4 of
lr seen).  They are held to 1e-3 of a step; a wrong update is a whole one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_train import MAIN_ROOT, cli_args, run_cli, sets, tiny_dir, write_yaml  # noqa: F401 (fixtures)

from espnet_adapters.bin import train_lora
from espnet_adapters.train.distributed import Dist, torchrun_command
from espnet_adapters.utils.cli import UserInputError

MAX_STEPS = 4
LR = 0.01


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (torchrun starts its workers in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def _outputs(out: Path) -> tuple[dict, dict[str, torch.Tensor], dict[int, dict[str, torch.Tensor]]]:
    """Training stats, final LoRA weights and final optimizer state of a run."""
    stats = json.loads((out / "train_stats.json").read_text())
    ckpt = out / "checkpoints" / "last"
    moments = torch.load(ckpt / "trainer_state.pt", weights_only=True)["optimizer"]["state"]
    return stats, load_file(str(ckpt / "trainable.safetensors")), moments


def test_two_processes_match_one_and_resume(
    tiny_dir: Path, sets: dict[str, tuple[Path, Path]], tmp_path: Path  # noqa: F811
) -> None:
    lora = write_yaml(tmp_path / "lora.yaml", {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0})
    cfg = write_yaml(tmp_path / "train.yaml", {
        "batch_size": 5, "grad_accum": 2, "lr": LR, "warmup_steps": 0, "max_steps": MAX_STEPS, "eval_every": 2,
        "save_every": 1, "log_every": 1,
    })
    single = tmp_path / "single"
    assert run_cli(cli_args(tiny_dir, sets, "train6", cfg, single, lora)) == 0

    ddp = tmp_path / "ddp"
    command = torchrun_command(train_lora.MODULE, cli_args(tiny_dir, sets, "train6", cfg, ddp, lora),
                               nproc_per_node=2, num_nodes=1)
    env = {**os.environ, "PYTHONPATH": str(MAIN_ROOT), "OMP_NUM_THREADS": "1"}
    log = tmp_path / "torchrun.log"
    with log.open("w") as handle:
        proc = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
        state_file = ddp / "checkpoints" / "last" / "trainer_state.pt"
        deadline = time.monotonic() + 300
        while not state_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in _descendants(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.wait()
    assert state_file.exists(), log.read_text()[-3000:]
    killed_at = torch.load(state_file, weights_only=True)["run"]["step"]
    assert 0 < killed_at < MAX_STEPS, log.read_text()[-3000:]

    with log.open("a") as handle:
        assert subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode == 0, \
            log.read_text()[-3000:]
    (ref_stats, ref_weights, ref_moments), (stats, weights, moments) = _outputs(single), _outputs(ddp)
    assert stats["processes"] == 2 and ref_stats["processes"] == 1
    assert [h["step"] for h in stats["history"]] == list(range(1, MAX_STEPS + 1))
    np.testing.assert_allclose([h["loss"] for h in stats["history"]], [h["loss"] for h in ref_stats["history"]],
                               rtol=1e-6)
    assert [e["step"] for e in stats["evals"]] == [e["step"] for e in ref_stats["evals"]] == [0, 2, 4]
    np.testing.assert_allclose([e["dev_loss"] for e in stats["evals"]],
                               [e["dev_loss"] for e in ref_stats["evals"]], rtol=1e-6)
    for index, ref in ref_moments.items():
        for key in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_allclose(moments[index][key].numpy(), ref[key].numpy(), rtol=0,
                                       atol=1e-5 * float(ref[key].abs().max()), err_msg=f"{index} {key}")
    assert weights.keys() == ref_weights.keys()
    for name, value in weights.items():
        np.testing.assert_allclose(value.numpy(), ref_weights[name].numpy(), rtol=0, atol=1e-3 * LR, err_msg=name)

    # Rank 0 alone wrote: one event file per launch, one log of the resume, no half-written leftovers.
    assert len(list((ddp / "tensorboard").glob("events.out.tfevents.*"))) == 2
    assert (ddp / "train.log").read_text().count("resumed from") == 1
    assert not [p for p in ddp.rglob(".*") if p.name.endswith((".tmp", ".old"))]


def test_parallel_options_exec_torchrun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``--ddp_cpu_procs 2`` replaces the process by torchrun running the same command; a worker trains."""

    class Exec(Exception):
        pass

    def fake_execv(path: str, command: list[str]) -> None:
        raise Exec(command)

    monkeypatch.setattr(os, "execv", fake_execv)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    missing = tmp_path / "missing.yaml"
    argv = ["--lang", "hi", "--train_dir", "t", "--train_feats", "t.scp", "--dev_dir", "d", "--dev_feats", "d.scp",
            "--out_dir", str(tmp_path / "out"), "--lora_config", str(missing), "--ddp_cpu_procs", "2"]
    with pytest.raises(Exec) as caught:
        run_cli(argv)
    assert caught.value.args[0] == torchrun_command(train_lora.MODULE, argv, nproc_per_node=2, num_nodes=1)
    assert run_cli([*argv, "--ngpu", "1"]) == 1
    assert "it needs --ngpu 0" in caplog.text

    monkeypatch.setenv("WORLD_SIZE", "1")  # a torchrun worker: trains, here up to the missing LoRA config
    assert run_cli(argv) == 1
    assert f"{missing}: cannot read" in caplog.text


def test_shards_cover_the_batch_in_order() -> None:
    batch = list(range(5))
    assert [Dist(rank, 2).shard(batch) for rank in range(2)] == [[0, 1, 2], [3, 4]]
    assert [Dist(rank, 3).shard([7]) for rank in range(3)] == [[7], [], []]
    assert Dist().shard(batch) == batch


def test_torchrun_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One node: a standalone rendezvous; several: SLURM's node id, node count and first host."""
    command = torchrun_command("pkg.mod", ["--x", "1"], nproc_per_node=4, num_nodes=1, env={})
    assert command == [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "4", "--standalone",
                       "-m", "pkg.mod", "--x", "1"]

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "scontrol").write_text("#!/bin/sh\n[ \"$1 $2 $3\" = 'show hostnames gpu[07-08]' ] && "
                                   "printf 'gpu07\\ngpu08\\n'\n")
    (fake / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    slurm = {"SLURM_JOB_ID": "123456", "SLURM_NNODES": "2", "SLURM_NTASKS": "2", "SLURM_NODEID": "1",
             "SLURM_JOB_NODELIST": "gpu[07-08]"}
    command = torchrun_command("pkg.mod", [], nproc_per_node=4, num_nodes=2, env=slurm)
    assert command[3:-2] == ["--nproc-per-node", "4", "--nnodes", "2", "--node-rank", "1", "--master-addr", "gpu07",
                             "--master-port", str(20000 + 123456 % 10000)]
    assert "29400" in torchrun_command("pkg.mod", [], nproc_per_node=4, num_nodes=2, master_port=29400, env=slurm)

    with pytest.raises(UserInputError, match="needs a SLURM job"):
        torchrun_command("pkg.mod", [], nproc_per_node=4, num_nodes=2, env={})
    with pytest.raises(UserInputError, match="one task per node"):
        torchrun_command("pkg.mod", [], nproc_per_node=4, num_nodes=2, env={**slurm, "SLURM_NTASKS": "8"})
