"""The Gradio WebUI. Imports gradio and the engine's torch-free types only
(see engine/interfaces.py)."""
