"""The HTTP API: AUTOMATIC1111's ``/sdapi/v1`` dialect and an async job API (``/sdapi/v2``).

Imports the engine's torch-free types and the service only; it never imports torch or gradio.
"""
