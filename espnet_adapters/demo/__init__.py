"""The live routing demo: a small web page over :class:`espnet_adapters.transcribe.engine.Transcriber`.

:mod:`.plots`   the LID's language probabilities over time and the adapter weights of each segment (PNG)
:mod:`.server`  a standard-library HTTP server: the page, and ``POST /api/transcribe`` (audio in, JSON out)
``page.html``   the page: upload or record audio, see the routed transcript beside the base model's,
                the plot and the adapters' weights
"""
