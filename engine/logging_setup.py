"""Logging for the entry points (the CLI, app.py): configured once, libraries kept quiet."""

from __future__ import annotations

import logging
import warnings


def quiet_libraries() -> None:
    """diffusers and transformers keep their own handlers and progress bars; controlnet-aux and
    timm warn about optional extras on import. None of it helps a user."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.set_verbosity_error()
        library.disable_progress_bar()
    for module in ("controlnet_aux", "timm", "torch.jit", "diffusers", "transformers"):
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
        warnings.filterwarnings("ignore", category=UserWarning, module=module)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _modelscope_handler(level: int) -> None:
    """The ModelScope SDK gives its logger an INFO handler of its own unless one is there
    already (checked when it first logs): this one, in our format and at our level, is."""
    sdk = logging.getLogger("modelscope_hub")
    handler = next((h for h in sdk.handlers if h.get_name() == "huajing"), None)
    if handler is None:  # configured again (the CLI's main() in tests): one handler still
        handler = logging.StreamHandler()
        handler.set_name("huajing")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        sdk.addHandler(handler)
    handler.setLevel(level)
    sdk.propagate = False


def configure_logging(verbose: bool = False, quiet_now: bool = True) -> None:
    """``quiet_now=False`` leaves diffusers and transformers unimported (the app serves its
    page first; the engine quiets them when it imports them)."""
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format=LOG_FORMAT)
    for noisy in ("httpx", "huggingface_hub", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _modelscope_handler(level)
    if quiet_now:
        quiet_libraries()
