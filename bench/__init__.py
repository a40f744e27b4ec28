"""Benchmarks of 画境: ``python -m bench`` runs the CPU suite on tiny replicas (see
``bench/__main__.py``); ``bench/gpu.py`` measures real-size models on a GPU (``--tiny`` on the
CPU); ``bench/startup.py`` and ``bench/responsiveness.py`` also run alone. They print numbers and
never fail on them (only on a broken comparison, e.g. images that should match and do not)."""
