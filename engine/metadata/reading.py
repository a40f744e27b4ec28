"""Generation parameters read back from an image, whoever wrote it: this app (a JSON chunk),
AUTOMATIC1111 (the ``parameters`` infotext) or ComfyUI (its ``prompt`` node graph)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from PIL import Image

from engine.metadata.infotext import parse_infotext, read_png_parameters
from engine.metadata.outputs import REQUEST_CHUNK
from engine.samplers import find_sampler, find_schedule

# ComfyUI's sampler names for the ones we know under A1111's names.
COMFY_SAMPLERS = {"euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun",
                  "lms": "LMS", "dpm_2": "DPM2", "dpm_2_ancestral": "DPM2 a",
                  "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_sde": "DPM++ 2M SDE",
                  "dpmpp_sde": "DPM++ SDE", "ddim": "DDIM", "uni_pc": "UniPC",
                  "deis": "DEIS", "lcm": "LCM"}


@dataclass(frozen=True)
class ImageParameters:
    source: str  # "huajing", "a1111" or "comfyui"
    text: str  # what to show: the infotext, or the raw JSON
    parameters: dict[str, Any]  # our parameter names (prompt, steps, sampler, ...)


def _json_chunk(image: Image.Image, key: str) -> Any:
    raw = image.info.get(key)
    if not isinstance(raw, (str, bytes)):
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _comfy_text(graph: dict, link: Any) -> str:
    """The text of the CLIPTextEncode node a sampler input links to (``[node_id, slot]``)."""
    if isinstance(link, list) and link:
        node = graph.get(str(link[0]))
        inputs = node.get("inputs") if isinstance(node, dict) else None
        text = inputs.get("text") if isinstance(inputs, dict) else None
        if isinstance(text, str):
            return text
    return ""


def _from_comfy(graph: dict) -> dict[str, Any] | None:
    nodes = [n for n in graph.values() if isinstance(n, dict)]
    sampler = next((n for n in nodes if str(n.get("class_type", "")).startswith("KSampler")),
                   None)
    if sampler is None:
        return None
    inputs = sampler.get("inputs")
    if not isinstance(inputs, dict):
        return None
    spec = find_sampler(COMFY_SAMPLERS.get(str(inputs.get("sampler_name")), ""))
    parameters: dict[str, Any] = {
        "prompt": _comfy_text(graph, inputs.get("positive")),
        "negative_prompt": _comfy_text(graph, inputs.get("negative")),
        "seed": inputs.get("seed", inputs.get("noise_seed")), "steps": inputs.get("steps"),
        "guidance": inputs.get("cfg"), "sampler": spec.name if spec else None,
        "schedule": find_schedule(str(inputs.get("scheduler", ""))) or "automatic",
    }
    latent = next((n for n in nodes if n.get("class_type") == "EmptyLatentImage"), None)
    latent_inputs = latent.get("inputs") if latent else None
    if isinstance(latent_inputs, dict):
        parameters.update(width=latent_inputs.get("width"), height=latent_inputs.get("height"))
    return {k: v for k, v in parameters.items() if v is not None}


def read_image_parameters(image: Image.Image) -> ImageParameters | None:
    ours = _json_chunk(image, REQUEST_CHUNK)
    infotext = read_png_parameters(image)
    if isinstance(ours, dict):
        return ImageParameters("huajing", infotext or json.dumps(ours, ensure_ascii=False), ours)
    if infotext:
        return ImageParameters("a1111", infotext, parse_infotext(infotext))
    graph = _json_chunk(image, "prompt")
    if isinstance(graph, dict) and (parameters := _from_comfy(graph)):
        return ImageParameters("comfyui", json.dumps(graph, ensure_ascii=False), parameters)
    return None
