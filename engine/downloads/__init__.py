"""Getting a model's files: where from (``sources``, ``modelscope``), the job a UI watches
(``jobs``), the fetch-and-verify loop (``downloader``), resumable hub transfers, importing a local
folder, and the one-time fp16 conversion after a download.

May import the top-level contract and ``engine.store`` (never the reverse). ``sources`` and
``jobs`` are torch-free, for ``ui/`` and ``api/``; ``conversion`` imports torch and is imported
only once a download is done. Never ``engine.generate`` or gradio.
"""
