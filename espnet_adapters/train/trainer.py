"""The LoRA training loop: resumable, evaluated by dev WER, logged for people and TensorBoard.

One *step* is one optimizer update (``grad_accum`` micro-batches).  The dev set
is scored before the first step (step 0: the LoRA update B·A starts at zero, so
this is the base model) and every ``eval_every`` steps, twice from one encoder
pass per batch: the teacher-forced loss and the WER/CER/words correct of
decoding with the *test* decoding options (``DecodeOptions``: the same search,
token caps and loop guards as the recipe's decoding stage, language forced,
text normalised as in scoring), so selection optimises what is reported.  The
adapter with the best dev WER (ties: lower dev loss) is written to
``<out_dir>/adapter`` in peft's layout, and only if it beats the base model's
step-0 WER: otherwise no adapter is installed and ``train_stats.json`` says
``"adapter": false`` (the recipe reports it).  ``patience`` evaluations without
improvement stop the run.

Data parallel (one process per GPU under torchrun, see ``distributed.py``):
the sampler is the same on every rank, so every rank knows each *global*
batch of ``batch_size`` utterances and takes its contiguous slice of it.  The
update is the single-process one: each rank weights its slice's mean token
loss by (its tokens / the global batch's tokens), which makes the slices' losses
add up to the global batch's mean token loss, times the world size, which DDP's
gradient averaging divides out.  This holds for slices of any lengths, so the
1- and N-process updates agree up to float summation order (and padding:
a slice is padded to its own longest label); with LoRA dropout or SpecAugment
they agree in distribution only, as each rank draws its own random numbers.
The logged loss is the global mean.  Dev evaluation is sharded the same way
and gathered, so every rank takes the same best/patience decisions.  Rank 0
alone writes outputs; every rank loads the checkpoint on resume, each
restoring its own RNG states (saved by rank 0 for all ranks).

Resuming: ``checkpoints/last`` (replaced atomically every ``save_every``
steps and at the end) holds the adapter weights, the optimizer, scheduler and
GradScaler states, the python/numpy/torch RNG states, the epoch and the batch
position in it, the best score, the patience counter and the history.  Running
the same command again after a crash (even ``kill -9``) continues from there
and reproduces the uninterrupted run's losses.  The checkpoint also stores the
run's *signature* (model, data, configs, seed): resuming with other options is
refused, since the result would match neither.  ``train.done`` marks a finished
run: the same command is then a no-op.

Outputs in ``out_dir``: ``adapter/``, ``checkpoints/last/``, ``tensorboard/`` or ``wandb/`` (the tracker),
``curves.png``, ``train_stats.json``, ``train.done`` (``train.log`` is the
entry point's).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import random
import resource
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase, get_linear_schedule_with_warmup
from transformers.modeling_outputs import BaseModelOutput

from espnet_adapters.scoring.metrics import score_chars, score_words
from espnet_adapters.scoring.normalize import normalize_text
from espnet_adapters.train.data import AsrDataset, Batch, BucketBatchSampler, CacheSource
from espnet_adapters.train.distributed import Dist
from espnet_adapters.train.tracking import TRACKERS, NoTracker, Tracker, make_tracker
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.config import YamlConfig
from espnet_adapters.utils.fileio import atomic_dir, atomic_write
from espnet_adapters.utils.plots import pyplot_module, save_figure
from espnet_adapters.whisper.decode import DecodeOptions, decode_features
from espnet_adapters.whisper.cross_mask import CrossAttentionFrames
from espnet_adapters.whisper.inputs import encode, speech_frames
from espnet_adapters.whisper.lora import count_parameters, save_adapter

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")
DONE_FILE = "train.done"
CHECKPOINT_DIR = "checkpoints/last"
WEIGHTS_FILE = "trainable.safetensors"
STATE_FILE = "trainer_state.pt"
# What a run writes into out_dir besides the log (train.log keeps the history of every attempt).
STALE_OUTPUTS = ("adapter", "checkpoints", "tensorboard", "wandb", "wandb_run_id", "curves.png", "train_stats.json",
                 DONE_FILE)


@dataclass(frozen=True)
class TrainConfig(YamlConfig):
    """``conf/train/*.yaml``.  Steps count optimizer updates."""

    batch_size: int = 8  # utterances per micro-batch over all processes (data parallel: split among them)
    grad_accum: int = 1  # micro-batches per update: effective batch = batch_size * grad_accum
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 10  # linear warm-up from 0, then linear decay to 0 at max_steps
    max_steps: int = 200
    clip_grad_norm: float = 1.0  # max global L2 norm of the adapter gradients; 0 = no clipping
    eval_every: int = 50  # dev loss + dev WER/CER every N steps (and at the end)
    save_every: int = 25  # checkpoints/last every N steps (and at the end)
    patience: int = 0  # stop after N evaluations without a better dev WER; 0 = never
    log_every: int = 10
    precision: str = "fp32"  # fp32 | bf16 (autocast; CPU or CUDA) | fp16 (CUDA, with GradScaler)
    grad_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% slower
    spec_augment: bool = False  # time/frequency masks on the log-mel (only when the encoder runs)
    freq_masks: int = 2
    freq_mask_width: int = 27  # max mel bins per mask
    time_masks: int = 2
    time_mask_ratio: float = 0.05  # max frames per mask, as a fraction of the utterance
    dev_batch_size: int = 8  # per process (the decoding options are the test set's: see the module doc)
    # Install the best adapter even when the base model (step 0) is better on dev: for smoke tests of the
    # stages after training (a few steps rarely beat the base); never for results.
    install_below_base: bool = False
    source: str = "<default TrainConfig>"

    def __post_init__(self) -> None:
        positive = ("batch_size", "grad_accum", "max_steps", "eval_every", "save_every", "log_every",
                    "dev_batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("weight_decay", "warmup_steps", "clip_grad_norm", "patience", "freq_masks",
                     "freq_mask_width", "time_masks", "time_mask_ratio"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


@dataclass
class RunState:
    """Everything about progress that a resumed run must restore (besides weights and RNGs)."""

    step: int = 0
    epoch: int = 0
    position: int = 0  # next micro-batch of the epoch's batch list
    best_wer: float = math.inf
    best_dev_loss: float = math.inf
    best_step: int = 0
    bad_evals: int = 0  # evaluations since the last improvement
    stopped_early: bool = False
    train_seconds: float = 0.0
    utts_seen: int = 0
    history: list[dict[str, float]] = field(default_factory=list)  # per step: loss, lr
    evals: list[dict[str, float]] = field(default_factory=list)  # per evaluation: dev loss, WER, CER


def _signature_text(signature: Mapping[str, Any]) -> str:
    return json.dumps(signature, sort_keys=True, ensure_ascii=False)


def prepare_out_dir(out_dir: Path, signature: Mapping[str, Any]) -> bool:
    """True if ``out_dir`` holds a finished run of these options (nothing to do).

    The outputs of a run with *other* options (finished or not) are removed and
    the run starts over, as the recipe expects when it redoes a stage whose
    options changed; resuming them would give a run that matches neither.
    """
    done, state = out_dir / DONE_FILE, out_dir / CHECKPOINT_DIR / STATE_FILE
    if done.exists():
        previous = done.read_text(encoding="utf-8").strip()
    elif state.exists():
        previous = torch.load(state, map_location="cpu", weights_only=True)["signature"]
    else:
        return False
    if previous == _signature_text(signature):
        return done.exists()
    logger.warning("%s: outputs of a run with other options (model, data, configs or seed); starting over", out_dir)
    for name in STALE_OUTPUTS:
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    return False


def spec_augment(feats: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    """SpecAugment-style masks on trimmed (frames, n_mels) log-mel, from numpy's global RNG.

    Masked cells get the utterance's mean (Whisper's log-mel is not zero-mean).
    The last stored frame is left alone: it is the padding frame that
    ``pad_logmel`` repeats to 3000 frames, and masking it would mask the padding.
    """
    out = feats.copy()
    signal = out[:-1] if len(out) > 1 else out
    frames, n_mels = signal.shape
    fill = float(signal.mean())
    for _ in range(cfg.freq_masks):
        width = np.random.randint(0, min(cfg.freq_mask_width, n_mels) + 1)
        start = np.random.randint(0, n_mels - width + 1)
        signal[:, start : start + width] = fill
    max_width = int(cfg.time_mask_ratio * frames)
    for _ in range(cfg.time_masks):
        width = np.random.randint(0, max_width + 1)
        start = np.random.randint(0, frames - width + 1)
        signal[start : start + width, :] = fill
    return out


def _rng_state() -> dict[str, Any]:
    """All RNG states, in types ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {**np_state, "state": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                                        "pos": np_state["state"]["pos"]}},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np_state = dict(state["numpy"])
    np_state["state"] = {"key": np_state["state"]["key"].numpy().astype(np.uint32), "pos": np_state["state"]["pos"]}
    np.random.set_state(np_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (LoRA init, dropout, SpecAugment, ...)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """Trains ``model``'s adapter on ``train_set``, evaluating on ``dev_set`` (see the module doc)."""

    def __init__(
        self,
        model: PeftModel,
        tokenizer: PreTrainedTokenizerBase,
        train_set: AsrDataset,
        dev_set: AsrDataset,
        cfg: TrainConfig,
        out_dir: Path,
        *,
        lang: str,
        device: torch.device,
        seed: int,
        signature: Mapping[str, Any],
        meta: Mapping[str, Any],
        decode_opts: DecodeOptions,
        dist: Dist = Dist(),
        cut_layer: int | None = None,
        tracker: str = "tensorboard",
    ) -> None:
        if tracker not in TRACKERS:
            raise UserInputError(f"--tracker {tracker}: expected one of {', '.join(TRACKERS)}")
        if cfg.precision == "fp16" and device.type != "cuda":
            raise UserInputError(f"{cfg.source}: precision fp16 needs CUDA; use bf16 or fp32 on the CPU")
        if cfg.spec_augment and isinstance(train_set.source, CacheSource):
            raise UserInputError(f"{cfg.source}: spec_augment masks the encoder's input, but the training set's "
                                 "encoder outputs are cached; set spec_augment: false or drop the cache")
        for name, data in (("training", train_set), ("dev", dev_set)):
            cached = data.source.cut_layer if isinstance(data.source, CacheSource) else cut_layer
            if cached != cut_layer:
                raise ValueError(f"the {name} set's encoder cache is cut at layer {cached}, the adapter at {cut_layer}")
        # an encoder_top adapter: the frames are cut to the speech before this encoder layer (whisper/encoder.py)
        self.cut_layer = cut_layer
        self.model, self.tokenizer = model, tokenizer
        self.train_set, self.dev_set = train_set, dev_set
        self.cfg, self.out_dir, self.lang, self.device = cfg, out_dir, lang, device
        self.seed, self.dist, self.tracker = seed, dist, tracker
        self.decode_opts = dataclasses.replace(decode_opts, batch_size=cfg.dev_batch_size)
        self.signature = _signature_text(signature)
        self.meta = dict(meta)
        self.label_lengths = train_set.label_lengths
        self.sampler = BucketBatchSampler(self.label_lengths, cfg.batch_size, seed)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, cfg.warmup_steps, cfg.max_steps)
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
        self.state = RunState()
        self.ckpt_dir = out_dir / CHECKPOINT_DIR
        if cfg.grad_checkpointing:
            model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # Training forwards go through DDP (it all-reduces the gradients), evaluation uses the bare model.
        # DDP broadcasts rank 0's weights here, so every rank starts from the same adapter.  device_ids=None:
        # _forward moves the inputs itself (DDP would have to move a transformers ModelOutput).  Every LoRA
        # parameter takes part in every forward (adapters cover whole layers; encoder adapters never train on
        # cached encoder outputs, and an encoder_top adapter's top layers run in _encode on every step), so DDP
        # need not search the graph for unused ones.  (encoder_top under DDP has no test yet.)
        self.ddp = DistributedDataParallel(model, device_ids=None) if dist.world_size > 1 else None

    # ------------------------------------------------------------------ helpers

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.cfg.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _forward(
        self, module: torch.nn.Module, batch: Batch, encoder_outputs: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean token loss of ``batch`` by ``module`` (the model or its DDP wrapper).

        ``encoder_outputs`` (if given, from :meth:`_encode`) replaces the encoder pass.
        """
        enc = encoder_outputs
        inputs: dict[str, Any]
        with self._autocast():
            if enc is None and (batch.encoder_outputs is not None or self.decode_opts.encoder_trim is not None):
                enc = self._encode(batch)
            if enc is not None:
                inputs = {"encoder_outputs": BaseModelOutput(last_hidden_state=enc)}
            else:
                assert batch.input_features is not None
                inputs = {"input_features": batch.input_features.to(self.device)}
            with self._masked(batch):
                out = module(
                    **inputs,
                    decoder_input_ids=batch.decoder_input_ids.to(self.device),
                    labels=batch.labels.to(self.device),
                    use_cache=False,
                )
        return out.loss

    def _frames(self, batch: Batch) -> torch.Tensor | None:
        """Each row's encoder frames with ``encoder_span: speech`` (padded rows are masked), else None."""
        if self.decode_opts.encoder_span != "speech":
            return None
        return torch.tensor(speech_frames(batch.durations, self.decode_opts.encoder_trim))

    def _masked(self, batch: Batch) -> contextlib.AbstractContextManager[Any]:
        frames = self._frames(batch)
        return contextlib.nullcontext() if frames is None else CrossAttentionFrames(self.model, frames).active()

    def _encode(self, batch: Batch) -> torch.Tensor:
        """What the decoder attends to: the batch's cached states or features through the encoder (the
        parts that run here train, if adapted), cut by ``encoder_trim`` (at ``cut_layer``, if set)."""
        states = None if batch.encoder_outputs is None else batch.encoder_outputs.to(self.device, torch.float32)
        features = None
        if states is None:
            assert batch.input_features is not None
            features = batch.input_features.to(self.device)
        return encode(self.model.get_encoder(), batch.durations, self.decode_opts.encoder_trim, features=features,
                      states=states, cut_layer=self.cut_layer, span=self.decode_opts.encoder_span)

    def _micro_batches(self) -> Iterator[list[int]]:
        """The training stream from the saved (epoch, position) on, advancing the state."""
        while True:
            batches = self.sampler.epoch_batches(self.state.epoch)
            while self.state.position < len(batches):
                self.state.position += 1
                yield batches[self.state.position - 1]
            self.state.epoch += 1
            self.state.position = 0

    # ------------------------------------------------------------------ checkpoints

    def _save_checkpoint(self) -> None:
        """Rank 0 writes; every rank contributes its RNG states (each draws its own dropout and masks)."""
        rngs = self.dist.gather(_rng_state())
        if not self.dist.is_main:
            return
        weights = {name: p.detach().cpu().contiguous() for name, p in self.model.named_parameters() if p.requires_grad}
        with atomic_dir(self.ckpt_dir) as tmp:
            save_file(weights, str(tmp / WEIGHTS_FILE))
            torch.save(
                {
                    "signature": self.signature,
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "rng": rngs[0],
                    "rng_other_ranks": rngs[1:],
                    "run": asdict(self.state),
                },
                tmp / STATE_FILE,
            )

    def _load_checkpoint(self) -> None:
        saved = torch.load(self.ckpt_dir / STATE_FILE, map_location="cpu", weights_only=True)
        if saved["signature"] != self.signature:
            raise UserInputError(
                f"{self.ckpt_dir}: checkpoint of a run with other options (model, data, configs or seed); "
                f"run the same command to resume, or remove {self.out_dir} to start over"
            )
        weights = load_file(str(self.ckpt_dir / WEIGHTS_FILE), device=str(self.device))
        trainable = {name for name, p in self.model.named_parameters() if p.requires_grad}
        if set(weights) != trainable:
            raise UserInputError(f"{self.ckpt_dir}: its weights do not match this adapter's parameters")
        self.model.load_state_dict(weights, strict=False)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.scaler.load_state_dict(saved["scaler"])
        rngs = [saved["rng"], *saved.get("rng_other_ranks", [])]
        if len(rngs) == self.dist.world_size:
            _set_rng_state(rngs[self.dist.rank])
        else:
            logger.warning("%s: saved by %d process(es), resumed by %d: the random streams (dropout, SpecAugment) "
                           "start afresh", self.ckpt_dir, len(rngs), self.dist.world_size)
            seed_everything(self.seed + self.dist.rank)
        self.state = RunState(**saved["run"])
        logger.info("resumed from %s at step %d (epoch %d, batch %d)",
                    self.ckpt_dir, self.state.step, self.state.epoch, self.state.position)

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Dev loss (token-weighted), WER and CER; the encoder runs once per batch for both.

        Each rank scores its slice of the dev set; the gathered results are the
        same on every rank, and so are the decisions taken on them.
        """
        started = time.perf_counter()
        self.model.eval()
        opts = self.decode_opts
        loss_sum, tokens = 0.0, 0
        ids: list[str] = []
        refs: list[str] = []
        hyps: list[str] = []
        order = self.dist.shard(range(len(self.dev_set)))
        for start in range(0, len(order), self.cfg.dev_batch_size):
            batch = self.dev_set.collate(order[start : start + self.cfg.dev_batch_size])
            with self._autocast():
                enc = self._encode(batch).float()
            loss_sum += float(self._forward(self.model, batch, enc)) * batch.num_tokens
            tokens += batch.num_tokens
            with self._autocast():
                texts = decode_features(self.model, self.tokenizer, encoder_outputs=enc,
                                        languages=[self.lang] * len(batch.utt_ids), opts=opts,
                                        durations=batch.durations, encoder_frames=self._frames(batch))
            ids += batch.utt_ids
            refs += [normalize_text(text, self.lang) for text in batch.texts]
            hyps += [normalize_text(text, self.lang) for text in texts]
        self.model.train()
        parts = self.dist.gather((loss_sum, tokens, ids, refs, hyps))
        loss_sum, tokens = sum(part[0] for part in parts), sum(part[1] for part in parts)
        ids, refs, hyps = ([item for part in parts for item in part[k]] for k in (2, 3, 4))
        words = score_words(ids, refs, hyps).total
        cer = score_chars(ids, refs, hyps).total.error_rate
        for utt, ref, hyp in list(zip(ids, refs, hyps))[:2]:
            logger.info("dev %s\n  REF: %s\n  HYP: %s", utt, ref, hyp)
        return {"step": self.state.step, "dev_loss": loss_sum / tokens, "dev_wer": words.error_rate,
                "dev_cer": cer, "dev_corr": words.percent(words.correct),
                "seconds": round(time.perf_counter() - started, 2)}  # this process's wall time (decoding most of it)

    def _record_eval(self, result: dict[str, float], tracker: Tracker) -> None:
        """Log, keep the best adapter, count patience."""
        state = self.state
        state.evals.append(result)
        tracker.log({f"dev/{key[4:]}": result[key] for key in ("dev_loss", "dev_wer", "dev_cer", "dev_corr")},
                    state.step)
        improved = (result["dev_wer"], result["dev_loss"]) < (state.best_wer, state.best_dev_loss)
        if result["step"] == 0:  # the base model: the bar an adapter must clear, never installed itself
            if not self.cfg.install_below_base:
                state.best_wer, state.best_dev_loss, state.best_step = result["dev_wer"], result["dev_loss"], 0
            logger.info("step 0 (base model): dev loss %.4f, WER %.2f%%, CER %.2f%%, words correct %.1f%% (%.1f s)",
                        result["dev_loss"], result["dev_wer"], result["dev_cer"], result["dev_corr"],
                        result.get("seconds", 0.0))
            return
        if improved:
            state.best_wer, state.best_dev_loss, state.best_step = result["dev_wer"], result["dev_loss"], state.step
            state.bad_evals = 0
            meta = {**self.meta, "step": state.step, "dev_wer": result["dev_wer"], "dev_cer": result["dev_cer"],
                    "dev_loss": result["dev_loss"]}
            if self.dist.is_main:
                save_adapter(self.model, self.out_dir / "adapter", meta)
        else:
            state.bad_evals += 1
        logger.info(
            "step %d: dev loss %.4f, WER %.2f%%, CER %.2f%%, words correct %.1f%% (%.1f s)%s", state.step,
            result["dev_loss"], result["dev_wer"], result["dev_cer"], result["dev_corr"], result.get("seconds", 0.0),
            " (best, adapter saved)" if improved else f" (best {state.best_wer:.2f}% at step "
            f"{state.best_step}, {state.bad_evals}/{self.cfg.patience or 'inf'} without improvement)",
        )
        if self.cfg.patience and state.bad_evals >= self.cfg.patience:
            state.stopped_early = True
            logger.info("early stop: %d evaluations without a better dev WER", state.bad_evals)

    # ------------------------------------------------------------------ the loop

    def _grad_sync(self, sync: bool) -> contextlib.AbstractContextManager[Any]:
        """DDP all-reduces the gradients at each backward unless told not to: once per step is enough."""
        if self.ddp is None or sync:
            return contextlib.nullcontext()
        return self.ddp.no_sync()

    def _train_step(self, stream: Iterator[list[int]]) -> float:
        """One update; returns the mean token loss of its global batches (averaged over ``grad_accum``).

        See the module doc for the loss weights.  A rank whose slice of a small
        global batch is empty still runs a forward and backward (on the batch's
        first utterance, with weight 0): DDP's all-reduce needs every rank.
        """
        augment = (lambda f: spec_augment(f, self.cfg)) if self.cfg.spec_augment else None
        world = self.dist.world_size
        module = self.ddp if self.ddp is not None else self.model
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(self.cfg.grad_accum):
            indices = next(stream)
            mine = self.dist.shard(indices)
            batch = self.train_set.collate(mine or indices[:1], augment)
            weight = world * sum(self.label_lengths[i] for i in mine) / sum(self.label_lengths[i] for i in indices)
            with self._grad_sync(micro == self.cfg.grad_accum - 1):
                loss = self._forward(module, batch) * weight / self.cfg.grad_accum
                self.scaler.scale(loss).backward()
            total += loss.item() / world
            self.state.utts_seen += len(indices)
        total = self.dist.sum(total)
        self.scaler.unscale_(self.optimizer)
        if self.cfg.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return total

    def run(self) -> RunState:
        """Train (resuming if a checkpoint exists), then write curves, stats and the done marker."""
        cfg, state = self.cfg, self.state
        resumed = self.dist.on_main((self.ckpt_dir / STATE_FILE).exists)
        if resumed:
            self._load_checkpoint()
            state = self.state
        trainable, total = count_parameters(self.model)
        logger.info("trainable parameters: %d of %d (%.3f%%)", trainable, total, 100.0 * trainable / total)
        if self.dist.world_size > 1:
            logger.info("data parallel over %d processes, each taking its slice of every global batch of %d",
                        self.dist.world_size, cfg.batch_size)
        tracker = (make_tracker(self.tracker, self.out_dir, {**cfg.as_dict(), **self.meta, "lang": self.lang,
                                                             "seed": self.seed, "trainable_params": trainable},
                                state.step if resumed else None)
                   if self.dist.is_main else NoTracker())
        if not state.evals:
            self._record_eval(self.evaluate(), tracker)
        self.model.train()
        stream = self._micro_batches()
        interactive = sys.stderr.isatty()
        with tqdm(total=cfg.max_steps, initial=state.step, desc=f"train {self.lang}", unit="step",
                  mininterval=1.0 if interactive else 60.0, disable=not self.dist.is_main) as progress:
            while state.step < cfg.max_steps and not state.stopped_early:
                started = time.perf_counter()
                loss = self._train_step(stream)
                state.train_seconds += time.perf_counter() - started
                state.step += 1
                lr = self.scheduler.get_last_lr()[0]
                state.history.append({"step": state.step, "loss": loss, "lr": lr})
                tracker.log({"train/loss": loss, "train/lr": lr}, state.step)
                progress.update(1)
                progress.set_postfix(loss=f"{loss:.3f}")
                if state.step % cfg.log_every == 0:
                    logger.info("step %d/%d: loss %.4f, lr %.2e, epoch %d", state.step, cfg.max_steps, loss, lr,
                                state.epoch)
                if state.step % cfg.eval_every == 0:
                    self._record_eval(self.evaluate(), tracker)
                if state.step % cfg.save_every == 0 or state.step == cfg.max_steps or state.stopped_early:
                    self._save_checkpoint()
        if not state.evals or state.evals[-1]["step"] != state.step:
            self._record_eval(self.evaluate(), tracker)
            self._save_checkpoint()
        tracker.close()
        if state.best_step == 0:
            logger.warning("no adapter installed: no evaluation beat the base model's dev WER %.2f%% (step 0)",
                           state.best_wer)
        if self.dist.is_main:
            self._write_summary()
            with atomic_write(self.out_dir / DONE_FILE) as handle:
                handle.write(self.signature + "\n")
        return state

    def _write_summary(self) -> None:
        state = self.state
        trainable, total = count_parameters(self.model)
        best = next((e for e in state.evals if e["step"] == state.best_step), {})
        stats = {
            "adapter": state.best_step > 0,  # False: the base model was best on dev, no adapter/ was written
            "lang": self.lang,
            "train_utts": len(self.train_set),
            "base_dev_wer": state.evals[0]["dev_wer"] if state.evals and state.evals[0]["step"] == 0 else None,
            "steps": state.step,
            "processes": self.dist.world_size,
            "epochs": state.epoch + state.position / max(1, len(self.sampler.epoch_batches(state.epoch))),
            "stopped_early": state.stopped_early,
            "best_step": state.best_step,
            "best_dev_wer": state.best_wer,
            "best_dev_cer": best.get("dev_cer"),
            "best_dev_corr": best.get("dev_corr"),
            "best_dev_loss": state.best_dev_loss,
            "trainable_params": trainable,
            "total_params": total,
            "train_seconds": round(state.train_seconds, 2),
            # dev evaluations (loss + decoding with the test rules), step 0 included; 0 for evaluations
            # made before this was recorded (a training resumed from an older checkpoint)
            "eval_seconds": round(sum(e.get("seconds", 0.0) for e in state.evals), 2),
            "seconds_per_step": round(state.train_seconds / max(1, state.step), 4),
            "utts_per_second": round(state.utts_seen / state.train_seconds, 3) if state.train_seconds else None,
            "peak_memory_mb": peak_memory_mb(self.device),
            "history": state.history,
            "evals": state.evals,
        }
        with atomic_write(self.out_dir / "train_stats.json") as handle:
            json.dump(stats, handle, indent=1)
            handle.write("\n")
        plot_curves(state, self.out_dir / "curves.png", title=self.out_dir.name)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of training: CUDA's peak allocation on a GPU, the process's peak resident set on CPU
    (model, optimizer, activations and the Python heap together)."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def plot_curves(state: RunState, path: Path, title: str) -> None:
    """The learning curve as a PNG: train/dev loss (left), dev WER, CER and words correct (right).

    Step 0 is the base model; the dotted line marks the installed adapter's step.
    """
    fig, (ax, err_ax) = pyplot_module().subplots(1, 2, figsize=(11, 4.2))
    ax.plot([h["step"] for h in state.history], [h["loss"] for h in state.history], lw=0.8, label="train loss")
    ax.plot([e["step"] for e in state.evals], [e["dev_loss"] for e in state.evals], "o-", label="dev loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.legend(loc="upper right")
    steps = [e["step"] for e in state.evals]
    for key, style, label in (("dev_wer", "s-", "dev WER"), ("dev_cer", "^-", "dev CER"),
                              ("dev_corr", "o--", "dev words correct")):
        if all(key in e for e in state.evals):
            err_ax.plot(steps, [e[key] for e in state.evals], style, label=label)
    err_ax.set_xlabel("step (0 = base model)")
    err_ax.set_ylabel("%")
    err_ax.set_ylim(bottom=0)
    if state.best_step:
        err_ax.axvline(state.best_step, color="gray", ls=":", lw=1, label=f"installed (step {state.best_step})")
    err_ax.legend(loc="best")
    fig.suptitle(title)
    save_figure(fig, path)
