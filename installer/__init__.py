"""The launcher's logic (``launch.py``): standard library only, because it runs on the user's
Python before any virtualenv or package exists. The app reuses its hardware probes."""
