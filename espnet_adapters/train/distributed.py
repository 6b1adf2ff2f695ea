"""Data-parallel training under ``torchrun``: joining the job, sharding, collectives, launching.

A training job is relaunched under ``torch.distributed.run`` (torchrun) when it
asks for more than one process: ``--ngpu N`` (N > 1, one process per GPU),
``--num_nodes M`` (M > 1) or ``--ddp_cpu_procs N`` (N gloo processes on the CPU,
for testing the distributed code path without GPUs).  torchrun gives every
worker ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`distributed_session`
reads them, joins the process group (NCCL on CUDA, gloo on the CPU) and picks
the device (``cuda:LOCAL_RANK``).  A job that torchrun (or a cluster's own
launcher) started already is never relaunched, so starting torchrun by hand works too::

    torchrun --nnodes 2 --node-rank R --master-addr HOST --master-port 29500 \\
        --nproc-per-node 4 -m espnet_adapters.bin.train_lora ... --ngpu 4

Rendezvous, as :func:`torchrun_command` builds it:

* one node: ``--standalone`` (torchrun picks a free local port, so concurrent
  jobs on one machine do not collide);
* several nodes: SLURM only, with the training command started once per node
  (``srun --ntasks-per-node 1``, as ``slurm.pl --num_nodes M`` does).  Node rank
  = ``SLURM_NODEID``, node count = ``SLURM_NNODES`` (must equal ``--num_nodes``),
  master = the first host of ``scontrol show hostnames $SLURM_JOB_NODELIST``,
  port = ``--master_port`` or, by default, 20000 + ``SLURM_JOB_ID`` mod 10000 so
  that two jobs sharing a first node do not collide.  The output directory
  must be on a file system every node sees.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as tdist

from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.model import pick_device

T = TypeVar("T")

# Set by torchrun in every worker: its presence means "already launched".
WORLD_SIZE_ENV = "WORLD_SIZE"


@dataclass(frozen=True)
class Dist:
    """This process's place in a data-parallel job; the default is the single-process run.

    Every collective is the identity for one process, so the trainer has one
    code path and a single-process run computes exactly what it always did.
    """

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes every output (logs, checkpoints, adapter, TensorBoard)."""
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's contiguous slice of ``items``: sizes differ by one at most, a slice may be empty.

        Contiguous, so that the ranks' slices concatenated in rank order are ``items`` again.
        """
        size, extra = divmod(len(items), self.world_size)
        start = self.rank * size + min(self.rank, extra)
        return list(items[start : start + size + (self.rank < extra)])

    def sum(self, value: float) -> float:
        """``value`` summed over the ranks (in float64, whatever the backend)."""
        if self.world_size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=_collective_device())
        tdist.all_reduce(tensor)
        return float(tensor.item())

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value`` (picklable), in rank order, on every rank."""
        if self.world_size == 1:
            return [value]
        values: list[Any] = [None] * self.world_size
        tdist.all_gather_object(values, value)
        return values

    def on_main(self, compute: Callable[[], T]) -> T:
        """``compute()`` run by rank 0 alone (it touches the file system), its result given to every rank."""
        if self.world_size == 1:
            return compute()
        box = [compute() if self.is_main else None]
        tdist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[return-value]


def _collective_device() -> torch.device:
    """NCCL reduces CUDA tensors only; gloo CPU tensors."""
    if tdist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def launched() -> bool:
    """Whether torchrun (or another launcher that sets its variables) started this process."""
    return WORLD_SIZE_ENV in os.environ


@contextlib.contextmanager
def distributed_session(ngpu: int) -> Iterator[tuple[Dist, torch.device]]:
    """This process's :class:`Dist` and device; joins and finally leaves the process group under torchrun.

    Without torchrun's variables (or with a world of one) this is the plain
    single-process run on :func:`pick_device`'s device.
    """
    device = pick_device(ngpu)
    world_size = int(os.environ.get(WORLD_SIZE_ENV, "1"))
    if world_size == 1:
        yield Dist(), device
        return
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserInputError(f"local rank {local_rank} but torch sees {torch.cuda.device_count()} CUDA device(s)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    tdist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield Dist(rank, world_size), device
    finally:
        tdist.destroy_process_group()


def torchrun_command(
    module: str,
    argv: Sequence[str],
    *,
    nproc_per_node: int,
    num_nodes: int,
    master_port: int | None = None,
    env: Mapping[str, str] = os.environ,
) -> list[str]:
    """``python -m torch.distributed.run <rendezvous> -m <module> <argv>`` (see the module doc)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc_per_node)]
    if num_nodes == 1:
        command.append("--standalone")
    else:
        command += _slurm_rendezvous(num_nodes, master_port, env)
    return [*command, "-m", module, *argv]


def _slurm_rendezvous(num_nodes: int, master_port: int | None, env: Mapping[str, str]) -> list[str]:
    """torchrun's static rendezvous options for this node of a SLURM job."""
    if "SLURM_JOB_ID" not in env:
        raise UserInputError(
            f"--num_nodes {num_nodes} needs a SLURM job (one task per node), or start torchrun on every node "
            "yourself: torchrun --nnodes M --node-rank R --master-addr HOST --master-port PORT --nproc-per-node G "
            "-m espnet_adapters.bin.train_lora ..."
        )
    nnodes, ntasks = env.get("SLURM_NNODES"), env.get("SLURM_NTASKS", env.get("SLURM_NNODES"))
    if nnodes != str(num_nodes) or ntasks != nnodes:
        raise UserInputError(
            f"--num_nodes {num_nodes}, but SLURM gave {nnodes} node(s) and {ntasks} task(s): run one task per node "
            f"on {num_nodes} nodes (slurm.pl --num_nodes {num_nodes}, srun --ntasks-per-node 1)"
        )
    nodelist = env["SLURM_JOB_NODELIST"]
    try:
        hosts = subprocess.run(["scontrol", "show", "hostnames", nodelist], check=True, capture_output=True,
                               text=True).stdout.split()
    except (OSError, subprocess.CalledProcessError) as err:
        raise UserInputError(f"cannot list the hosts of SLURM_JOB_NODELIST={nodelist}: {err}") from err
    if not hosts:
        raise UserInputError(f"scontrol show hostnames {nodelist}: no host")
    port = master_port if master_port is not None else 20000 + int(env["SLURM_JOB_ID"]) % 10000
    return ["--nnodes", str(num_nodes), "--node-rank", env["SLURM_NODEID"], "--master-addr", hosts[0],
            "--master-port", str(port)]
