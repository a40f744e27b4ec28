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


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "huggingface_hub", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quiet_libraries()
