"""Spoken language identification on the frozen Whisper encoder's outputs.

Routing an utterance to a language adapter needs its language before the
decoder runs.  The encoder pass that decoding needs anyway (or the recipe's
encoder cache, for sets that were cached) already holds what a small
classifier needs, so LID costs a pooling and a few matrix products per
utterance instead of a second model.

Modules, one concern each:
  config.py    ``LidConfig`` (``conf/lid/*.yaml``): model shape and training options
  data.py      the frames of a set: valid encoder frames (``feats_shape``) read from the cache
  models.py    ``LidModel``: [1-D CNN] + mean|attention pooling + linear|MLP classifier;
               ``window_posteriors`` for segment-level LID
  windows.py   ``window_starts``: the sliding windows (pure Python, also used by codeswitch.detect)
  train.py     the training loop: balanced languages, AdamW, selection on dev accuracy
  store.py     ``save_lid``/``load_lid``: ``lid_model.safetensors`` + ``lid.json``;
               ``lid_base_model``: the Whisper model whose encoder the LID was trained on
  evaluate.py  accuracy beside Whisper's LID and the majority class, on crops, timing (eval_lid)
  whisper_lid.py  Whisper's own language detection, restricted to the recipe's labels
  metrics.py   accuracy, macro-F1, confusion matrices (numpy only)
  plots.py     training curves and confusion matrices as PNG
"""
