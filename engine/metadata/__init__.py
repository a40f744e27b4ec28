"""Generation parameters in and out of images: the A1111 infotext (``infotext``), reading them
back from an uploaded image (``reading``), and saving numbered PNGs with them (``outputs``).

Torch-free, for ``ui/`` and ``api/`` too: may import the top-level contract, never
``engine.generate``, ``engine.downloads``, torch, diffusers, transformers or gradio.
"""
