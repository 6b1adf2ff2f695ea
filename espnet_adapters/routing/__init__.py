"""Routing an utterance of unknown language to the language adapters: what the strategies achieved.

The routed forward pass itself (LoRA mixing, the strategies' weights) is
``espnet_adapters.whisper.routing``; this package holds its decoding-side
inputs and outputs (decode.py, which needs torch) and reads and reports its
results (results.py, tau.py and report.py need no torch).

Modules, one concern each:
  decode.py   ``--adapter LANG=DIR`` pairs, the posteriors / truth a strategy routes on, batching
              by adapter, decoding under per-row routing weights, routing accuracy (route_decode,
              codeswitch_decode)
  results.py  per strategy: WER / CER, routing accuracy, decode ms, from score.py and route_decode
  tau.py      the threshold strategy's τ chosen on dev (tau_selection.json)
  report.py   the "## Language ID" and "## Adapter routing" sections and the bar chart (routing_report)
"""
