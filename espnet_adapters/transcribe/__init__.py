"""Transcribing recordings outside a recipe: audio files or folders in, text / JSON / SRT / VTT out.

:mod:`.audio`    finding the audio files and cutting long recordings into windows of at most 30 s
:mod:`.engine`   the base encoder, the project's LID and the routed adapters over those windows
:mod:`.formats`  the output files (text, JSON, SRT, VTT)
"""
