"""The built-in demo model set (``build``) and the tiny random-weight replicas of real repos it
and the tests are made of (``tiny_models``, ``tiny_annotators``).

May import anything in ``engine`` and torch (it writes weights); never gradio. Only ``app.py``
(``--demo``) and the tests import it.
"""
