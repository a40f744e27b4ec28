"""Command line for the engine alone, without gradio.

    python -m engine txt2img --model M --prompt P --out FILE.png [options]
    python -m engine img2img --model M --init-image FILE --strength S --prompt P --out FILE.png

M is a manifest id, a hub id, a local folder or a single-file .safetensors checkpoint. A
model that is not downloaded yet is fetched first with ``--download`` (or after a yes at the
question on a terminal), from ``--source``. Prints the seed of every image; exits 2 with a
translated message on bad input.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from engine.downloads.sources import SOURCE_KINDS
from engine.samplers import DEFAULT_SAMPLER
from locales import DEFAULT_LANGUAGE, LANGUAGES, error_text, translate, warning_text

logger = logging.getLogger(__name__)

# After Ctrl-C, how long a transfer may take to notice (it looks between chunks of up to 10 MB,
# minutes apart on a slow line); then the process leaves anyway. What arrived stays for the next
# run, and the model stays pending (it never loads) until a run has verified every file.
CANCEL_WAIT_S = 5.0


def _lora_argument(text: str):
    from engine.requests import LoraWeight

    name, sep, weight = text.rpartition(":")
    if not sep:
        return LoraWeight(text, 1.0)
    try:
        return LoraWeight(name, float(weight))
    except ValueError:
        return LoraWeight(text, 1.0)


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="manifest id, hub id or local folder")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--negative", default="")
    parser.add_argument("--out", required=True, type=Path, help="PNG file to write")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=-1)
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--sampler", default=DEFAULT_SAMPLER)
    parser.add_argument("--schedule", default="automatic")
    parser.add_argument("--guidance", type=float, default=7.0)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--batch-count", type=int, default=1)
    parser.add_argument("--lora", action="append", default=[], type=_lora_argument,
                        metavar="PATH_OR_ID:WEIGHT")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--cache-dir", type=Path, help="huggingface_hub cache (default: HF_HOME)")
    parser.add_argument("--offline", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--lang", choices=LANGUAGES, default=DEFAULT_LANGUAGE)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--download", action="store_true",
                        help="download missing models first (else asked on a terminal)")
    _source_arguments(parser)


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", choices=SOURCE_KINDS,
                        help="default: HF_ENDPOINT if set, else huggingface")
    parser.add_argument("--endpoint", help="the address of a custom hub-compatible source")
    parser.add_argument("--allow-private-endpoint", action="store_true",
                        help="allow an --endpoint on this machine or a private network")
    parser.add_argument("--no-convert", action="store_true",
                        help="keep only the original files (no fp16 safetensors copy)")


def _download_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="manifest id (see models_manifest.yaml)")
    _source_arguments(parser)
    parser.add_argument("--from-folder", type=Path,
                        help="take the model from this local folder instead of downloading")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--cache-dir", type=Path, help="huggingface_hub cache (default: HF_HOME)")
    parser.add_argument("--lang", choices=LANGUAGES, default=DEFAULT_LANGUAGE)
    parser.add_argument("--verbose", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine")
    commands = parser.add_subparsers(dest="command", required=True)
    _download_arguments(commands.add_parser("download", help="download a model, verified"))
    txt2img = commands.add_parser("txt2img", help="text to image (with --controlnet: ControlNet)")
    _common_arguments(txt2img)
    txt2img.add_argument("--controlnet", help="ControlNet manifest id, hub id or folder")
    txt2img.add_argument("--control-type", default="canny")
    txt2img.add_argument("--control-image", type=Path)
    txt2img.add_argument("--control-weight", type=float, default=1.0)
    txt2img.add_argument("--canny-low", type=int, default=100)
    txt2img.add_argument("--canny-high", type=int, default=200)
    img2img = commands.add_parser("img2img", help="image to image (with --mask: inpainting)")
    _common_arguments(img2img)
    img2img.add_argument("--init-image", required=True, type=Path)
    img2img.add_argument("--strength", type=float, default=0.75)
    img2img.add_argument("--mask", type=Path, help="white = repaint")
    img2img.add_argument("--mask-blur", type=int, default=4)
    return parser


def _build_request(args, limits):
    from engine import requests as r
    from engine.images import open_image_file

    common = dict(
        model=args.model, prompt=args.prompt, negative_prompt=args.negative,
        sampler=args.sampler, schedule=args.schedule, steps=args.steps, guidance=args.guidance,
        seed=args.seed, width=args.width, height=args.height, batch_size=args.batch_size,
        batch_count=args.batch_count, loras=tuple(args.lora))
    image = lambda path: open_image_file(path, limits.max_input_pixels)  # noqa: E731
    if args.command == "img2img":
        init = image(args.init_image)
        if args.mask:
            return r.InpaintRequest(init_image=init, strength=args.strength,
                                    mask=image(args.mask), mask_blur=args.mask_blur, **common)
        return r.Img2ImgRequest(init_image=init, strength=args.strength, **common)
    if args.controlnet:
        control_image = image(args.control_image) if args.control_image else None
        control = r.ControlSpec(
            model=args.controlnet, control_type=args.control_type, image=control_image,
            weight=args.control_weight, low_threshold=args.canny_low,
            high_threshold=args.canny_high)
        return r.ControlNetRequest(control=control, **common)
    return r.Txt2ImgRequest(**common)


def _output_paths(out: Path, count: int) -> list[Path]:
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i + 1}{out.suffix or '.png'}") for i in range(count)]


def run(args) -> int:
    from engine.errors import EngineError
    from engine.generate.engine import Engine
    from engine.metadata.outputs import encode_png
    from engine.settings import EngineSettings

    settings = EngineSettings(models_dir=args.models_dir, hub_cache_dir=args.cache_dir,
                              offline=args.offline or os.environ.get("HF_HUB_OFFLINE") == "1",
                              device=args.device, precision=args.precision,
                              allow_file_paths=True)
    try:
        engine = Engine(settings)
        request = _build_request(args, settings.limits)
        result = _generate_with_consent(engine, request, args)
    except EngineError as error:
        message = error_text(args.lang, error.code, error.params)
        print(translate(args.lang, "cli.error", message=message), file=sys.stderr)
        return 2
    if result is None:
        return 2
    for warning in result.warnings:
        text = warning_text(args.lang, warning.code, warning.params)
        print(translate(args.lang, "cli.warning", message=text))
    info = result.prompt_info
    print(translate(args.lang, "cli.prompt_tokens", tokens=info.tokens, chunks=info.chunks,
                    context_length=info.context_length))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for generated, path in zip(result.images, _output_paths(args.out, len(result.images)),
                               strict=True):
        path.write_bytes(encode_png(generated))  # with its parameters, as the app saves them
        print(translate(args.lang, "cli.seed_used", path=path, seed=generated.seed))
    return 0


def _generate_with_consent(engine, request, args, attempts: int = 3):
    """Generate; a model that is not downloaded yet is fetched first when the user agreed
    (``--download``, or "y" at the question on a terminal). None when a download failed."""
    from engine.errors import NOT_ON_DISK, EngineError

    prepared = engine.prepare(request)  # a bad request fails here, before any download
    for _ in range(attempts):  # the base, then a ControlNet, may each be missing
        try:
            return engine.generate(prepared)
        except EngineError as error:
            if error.code not in NOT_ON_DISK or not _agrees(args, error.params):
                raise
            missing = error.params["name"]
        if download(args, model_id=missing) != 0:
            return None
    return engine.generate(prepared)


def _agrees(args, params: dict) -> bool:
    if args.offline or os.environ.get("HF_HUB_OFFLINE") == "1":
        return False  # offline means no network, whatever else was asked
    if args.download:
        return True
    if not sys.stdin.isatty():
        return False
    question = translate(args.lang, "cli.download_question", name=params.get("name", "?"),
                         size=params.get("size", "?"))
    return input(question).strip().lower() in ("y", "yes", "是", "好")


def _progress_line(language: str, status) -> str:
    return translate(language, "cli.download_progress", **status.text_params())


def download(args, model_id: str | None = None) -> int:
    """Download with a progress line on the terminal; Ctrl-C cancels (a later run resumes)."""
    from engine.downloads.jobs import DownloadState
    from engine.downloads.sources import DownloadSource
    from engine.errors import EngineError
    from engine.service import ImageService
    from engine.settings import EngineSettings
    from engine.store.manifest import load_manifest

    settings = EngineSettings(models_dir=args.models_dir, hub_cache_dir=args.cache_dir,
                              offline=os.environ.get("HF_HUB_OFFLINE") == "1",
                              convert_downloads=not args.no_convert)
    job = None
    try:
        source = DownloadSource.from_choice(args.source, args.endpoint, os.environ,
                                            allow_private=args.allow_private_endpoint)
        service = ImageService(settings, load_manifest(settings.manifest_path))
        model_id = model_id or args.model
        if getattr(args, "from_folder", None):
            job = service.import_folder(model_id, args.from_folder)
        else:
            job = service.download(model_id, source)
        while not job.finished.wait(0.5):
            print("\r" + _progress_line(args.lang, job.status), end="", file=sys.stderr)
    except KeyboardInterrupt:
        return _cancelled(job, args.lang)
    except EngineError as error:
        print(translate(args.lang, "cli.error", message=error_text(args.lang, error.code,
                                                                  error.params)),
              file=sys.stderr)
        return 2
    status = job.status
    print("\r" + _progress_line(args.lang, status), file=sys.stderr)
    if status.state is not DownloadState.DONE:
        message = error_text(args.lang, status.error_code or "download_network_error",
                             status.error_params)
        print(translate(args.lang, "cli.error", message=message), file=sys.stderr)
        return 2
    key = "cli.download_done" if status.saved_bytes else "cli.download_verified"
    if status.size_only:
        key = "cli.download_size_only"
    print(translate(args.lang, key, name=model_id, **status.text_params()))
    return 0


def _cancelled(job, language: str) -> int:
    """Ctrl-C: stop the download, waiting a moment for it to stop (a second Ctrl-C, not)."""
    try:
        if job is not None:
            job.cancel()
            job.wait(CANCEL_WAIT_S)
    except KeyboardInterrupt:
        pass
    print("\n" + translate(language, "cli.download_cancelled"), file=sys.stderr)
    return 130


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from engine.logging_setup import configure_logging

    configure_logging(args.verbose)
    if args.command == "download":
        return download(args)
    return run(args)
