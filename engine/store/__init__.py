"""What is on disk: the manifest of known models, the catalog of local ones, the hub-cache store
that finds a model's files, the download records beside it, single-file checkpoints, and the
plans and hashes a download is checked against (``files``).

Torch-free, like the top-level contract, and never touches the network: it may import
``engine``'s top-level contract modules and itself, never ``engine.downloads``,
``engine.generate``, ``engine.demo``, torch, diffusers, transformers or gradio.
"""
