"""Lever experiment: LoRA on the top encoder layers + the decoder, the lower encoder layers cached.

The lower (6 - top) encoder layers run once on the full 30 s window (frozen, exact); their output is
cut to the speech + encoder_trim, and the top layers (with LoRA), the final layer norm and the decoder
run on the cut frames in every training step and dev evaluation (the Trainer's trim hook).
"""
import argparse, logging, math, random, time
from pathlib import Path
import kaldiio, numpy as np, torch
from peft import LoraConfig, get_peft_model
from espnet_adapters.train import trainer as trainer_mod
from espnet_adapters.train.data import load_dataset, AsrDataset
from espnet_adapters.train.trainer import TrainConfig, Trainer, seed_everything, prepare_out_dir
from espnet_adapters.whisper.decode import DecodeOptions
from espnet_adapters.whisper.model import load_whisper
from espnet_adapters.whisper.inputs import trim_encoder_outputs
from espnet_adapters.whisper.features import pad_logmel

p = argparse.ArgumentParser()
p.add_argument('--lang'); p.add_argument('--train_config'); p.add_argument('--top', type=int, default=2)
p.add_argument('--rank', type=int, default=32); p.add_argument('--trim', type=float, default=1.0)
p.add_argument('--out'); p.add_argument('--root', required=True, help='a recipe dir after stage 5 (dump/raw, dump/whisper_base)'); p.add_argument('--threads', type=int, default=1)
p.add_argument('--utts', type=int, default=0)
a = p.parse_args()
logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
logging.getLogger().addHandler(logging.FileHandler(out / 'train.log'))
torch.set_num_threads(a.threads)
R = Path(a.root); lang = a.lang
model, proc = load_whisper('whisper-base', torch.device('cpu'))
enc = model.model.encoder
low = len(enc.layers) - a.top


@torch.no_grad()
def lower_states(feats_scp: Path) -> dict[str, torch.Tensor]:
    states = {}
    items = list(kaldiio.load_scp(str(feats_scp)).items())
    t0 = time.time()
    for start in range(0, len(items), 8):
        chunk = items[start:start + 8]
        x = torch.stack([torch.as_tensor(pad_logmel(np.asarray(f)), dtype=torch.float32) for _, f in chunk])
        h = torch.nn.functional.gelu(enc.conv1(x)); h = torch.nn.functional.gelu(enc.conv2(h)).permute(0, 2, 1)
        h = h + enc.embed_positions.weight[: h.shape[1]]
        for layer in enc.layers[:low]:
            h = layer(h, None)
        for (utt, _), row in zip(chunk, h):
            states[utt] = row.to(torch.float16)
    logging.info('lower %d layers of %d utterances: %.0f s', low, len(items), time.time() - t0)
    return states


class StateSource:
    def __init__(self, states): self.states = states
    def keys_missing(self, utts): return [u for u in utts if u not in self.states]
    def fill(self, batch, augment):
        batch.encoder_outputs = torch.stack([self.states[u].float() for u in batch.utt_ids])


load = lambda d: load_dataset(R / f'dump/raw/{lang}_{d}', lang=lang, tokenizer=proc.tokenizer, max_target_positions=448,
                              feats_scp=R / f'dump/whisper_base/{lang}_{d}/feats.scp', model_source='whisper-base')
tr, dev = load('train'), load('dev')
if a.utts:
    ex = list(tr.examples); random.Random(0).shuffle(ex)
    tr = AsrDataset(sorted(ex[:a.utts], key=lambda e: e.utt_id), tr.source, tr.pad_id)
for ds, d in ((tr, 'train'), (dev, 'dev')):
    ds.source = StateSource(lower_states(R / f'dump/whisper_base/{lang}_{d}/feats.scp'))

seed_everything(1)
layers = '|'.join(str(i) for i in range(low, len(enc.layers)))
regex = rf"model\.(?:decoder\.layers\.\d+|encoder\.layers\.(?:{layers}))\.(?:[^.]+\.)?(?:q_proj|v_proj)"
model = get_peft_model(model, LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.05, target_modules=regex))
penc = model.base_model.model.model.encoder


def trim_then_top(encoder_outputs, durations, encoder_trim):
    if getattr(encoder_outputs, '_top_done', False):
        return encoder_outputs
    h = trim_encoder_outputs(encoder_outputs, durations, encoder_trim)
    for layer in penc.layers[low:]:
        h = layer(h, None)
    h = penc.layer_norm(h)
    h._top_done = True
    return h


trainer_mod.trim_encoder_outputs = trim_then_top
cfg = TrainConfig.from_yaml(a.train_config)
sig = {'cfg': cfg.as_dict(), 'trim': a.trim, 'top': a.top, 'rank': a.rank, 'utts': a.utts}
if prepare_out_dir(out, sig):
    print('done already'); raise SystemExit
t = Trainer(model, proc.tokenizer, tr, dev, cfg, out, lang=lang, device=torch.device('cpu'), seed=1,
            signature=sig, meta={'lang': lang, 'encoder_trim': a.trim, 'top': a.top}, decode_opts=DecodeOptions(encoder_trim=a.trim))
t.run()
