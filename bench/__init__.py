"""Benchmarks of 画境 on CPU with tiny replicas: ``python -m bench`` runs the suite (see
``bench/__main__.py``); ``bench/startup.py`` and ``bench/responsiveness.py`` also run alone."""
