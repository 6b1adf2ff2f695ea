"""Dev evaluations of the base model and an installed adapter under decoding variants (encoder_trim, script constraint).

python3 local/levers/decode_variants.py LANG ADAPTER_DIR [RECIPE_DIR] -> one line per (model, variant): dev loss, WER, CER, Corr, seconds.
"""
import json, sys, time, torch
from pathlib import Path
from peft import PeftModel
from espnet_adapters.train.data import load_dataset
from espnet_adapters.train.trainer import TrainConfig, Trainer
from espnet_adapters.whisper.decode import DecodeOptions
from espnet_adapters.whisper.model import load_whisper
R = Path(sys.argv[3]) if len(sys.argv) > 3 else Path('.')
torch.set_num_threads(1)
lang, adapter = sys.argv[1], sys.argv[2]
variants = [("whole", dict(encoder_trim=None)),
            ("trim1+script", dict(encoder_trim=1.0, script_constraint=True))]
model, proc = load_whisper('whisper-base', torch.device('cpu'))
dev = load_dataset(R / f'dump/raw/{lang}_dev', lang=lang, tokenizer=proc.tokenizer, max_target_positions=448,
                   feats_scp=R / f'dump/whisper_base/{lang}_dev/feats.scp',
                   encoder_cache=R / f'dump/whisper_base/encoder/{lang}_dev', model_source='whisper-base')
peft = PeftModel.from_pretrained(model, adapter, is_trainable=True).eval()
for n, prm in peft.named_parameters():
    prm.requires_grad = 'lora_' in n  # the Trainer builds an optimizer (never stepped here)
for name, kind in (("base", "base"), ("adapter", "adapter")):
    for label, opts in variants:
        t = Trainer(peft, proc.tokenizer, dev, dev, TrainConfig(), Path('/tmp/trimeval'), lang=lang,
                    device=torch.device('cpu'), seed=1, signature={}, meta={}, decode_opts=DecodeOptions(**opts))
        ctx = peft.disable_adapter() if kind == "base" else torch.no_grad()  # peft freezes the LoRA weights here
        with ctx:
            a = time.perf_counter(); r = t.evaluate(); b = time.perf_counter() - a
        print(json.dumps({"lang": lang, "model": name, "variant": label, **{k: round(v, 2) for k, v in r.items()},
                          "seconds": round(b, 1)}), flush=True)
