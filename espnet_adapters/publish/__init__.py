"""Publishing a run's adapters: one folder with every adapter, its model card and checksums.

:mod:`.licences`  the training data's licence per corpus and language (conf/export/data_licences.yaml)
:mod:`.cards`     a Hugging Face model card (README.md: YAML metadata + results) per adapter
:mod:`.export`    collecting a recipe's adapters, LID and routing threshold into an export folder,
                  and reading one back (checksums verified) for ``transcribe``
"""
