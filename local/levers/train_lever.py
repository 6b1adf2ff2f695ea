#!/usr/bin/env python3
"""Lever experiments: train_lora's code path (Trainer) with an encoder_trim and a training-subset option."""
import argparse, json, random, torch
from pathlib import Path
from espnet_adapters.train.data import load_dataset, AsrDataset
from espnet_adapters.train.trainer import TrainConfig, Trainer, seed_everything, prepare_out_dir
from espnet_adapters.whisper.decode import DecodeOptions
from espnet_adapters.whisper.lora import LoraSpec, apply_lora, count_parameters
from espnet_adapters.whisper.model import load_whisper
p=argparse.ArgumentParser()
p.add_argument('--lang'); p.add_argument('--train_config'); p.add_argument('--lora_config', default='conf/lora/r32_qv_dec.yaml')
p.add_argument('--trim', type=float, default=None); p.add_argument('--out'); p.add_argument('--utts', type=int, default=0)
p.add_argument('--root', required=True, help='a recipe dir after stage 5 (dump/raw, dump/whisper_base)'); p.add_argument('--threads', type=int, default=1); p.add_argument('--full_ft', action='store_true')
a=p.parse_args()
import logging; logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
fh=logging.FileHandler(Path(a.out).mkdir(parents=True, exist_ok=True) or Path(a.out)/'train.log'); logging.getLogger().addHandler(fh)
R=Path(a.root); lang=a.lang
torch.set_num_threads(a.threads)
model, proc = load_whisper('whisper-base', torch.device('cpu'))
seed_everything(1)
if a.full_ft:
    from peft import LoraConfig, get_peft_model
    # full fine-tuning of the decoder: every decoder parameter trains (peft wrapper with no LoRA target is not possible:
    # use modules_to_save-free path: mark params)
    for n, prm in model.named_parameters():
        prm.requires_grad = n.startswith('model.decoder.') or n.startswith('proj_out')
    spec = LoraSpec.from_yaml(a.lora_config)
    model = apply_lora(model, spec)
    for n, prm in model.named_parameters():  # full decoder fine-tuning: LoRA frozen at its zero init (B=0)
        prm.requires_grad = '.decoder.' in n and 'lora_' not in n
else:
    model = apply_lora(model, LoraSpec.from_yaml(a.lora_config))
load = lambda d: load_dataset(R/f'dump/raw/{lang}_{d}', lang=lang, tokenizer=proc.tokenizer, max_target_positions=448,
    feats_scp=R/f'dump/whisper_base/{lang}_{d}/feats.scp', encoder_cache=R/f'dump/whisper_base/encoder/{lang}_{d}', model_source='whisper-base')
tr, dev = load('train'), load('dev')
if a.utts:
    ex = list(tr.examples); random.Random(0).shuffle(ex)
    tr = AsrDataset(sorted(ex[:a.utts], key=lambda e: e.utt_id), tr.source, tr.pad_id)
cfg = TrainConfig.from_yaml(a.train_config)
sig = {'cfg': cfg.as_dict(), 'trim': a.trim, 'lora': a.lora_config, 'utts': a.utts, 'full': a.full_ft}
if prepare_out_dir(Path(a.out), sig):
    print('done already'); raise SystemExit
t = Trainer(model, proc.tokenizer, tr, dev, cfg, Path(a.out), lang=lang, device=torch.device('cpu'), seed=1,
            signature=sig, meta={'lang': lang, 'encoder_trim': a.trim}, decode_opts=DecodeOptions(encoder_trim=a.trim))
t.run()
