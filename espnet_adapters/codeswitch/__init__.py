"""Code-switched test sets: composing them, their truth, finding the switches, the report.

Modules, one concern each:
  truth.py    segments_truth / switches (and detected) files: read and write
  compose.py  a synthetic code-switched set from single-language test sets (make_codeswitch)
  detect.py   switch detection from window-level LID posteriors (codeswitch_decode)
  decode.py   LID on sliding windows, the systems' pieces, decoding each with its language's
              adapter, the outputs (codeswitch_decode)
  report.py   WER per system, degradation vs single-language, switch-detection metrics,
              codeswitch.md and results.json (codeswitch_report)
"""
