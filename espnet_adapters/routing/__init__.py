"""Routing an utterance of unknown language to the language adapters: what the strategies achieved.

The routed forward pass itself (LoRA mixing, the strategies' weights) is
``espnet_adapters.whisper.routing``; this package reads and reports its results
without torch.

Modules, one concern each:
  results.py  per strategy: WER / CER, routing accuracy, decode ms, from score.py and route_decode
  tau.py      the threshold strategy's τ chosen on dev (tau_selection.json)
  report.py   the "## Language ID" and "## Adapter routing" sections and the bar chart (routing_report)
"""
