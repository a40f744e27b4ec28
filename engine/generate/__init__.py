"""Making images: the ``Engine`` (``engine``), the pipeline cache, LoRAs, prompt encoding,
ControlNet preprocessors and annotators, and device placement. The one package that owns torch,
diffusers and transformers at import time.

May import the top-level contract, ``engine.store`` and ``engine.metadata``; ``ui/`` and
``api/`` never import it (the service loads it lazily). Never gradio.
"""
