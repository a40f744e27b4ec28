"""Parameters read back from images written by us, by AUTOMATIC1111 and by ComfyUI."""

from __future__ import annotations

import io
import json

from PIL import Image, PngImagePlugin

from engine.metadata.outputs import encode_png
from engine.metadata.reading import read_image_parameters
from engine.requests import GeneratedImage

OURS = {"mode": "txt2img", "model": "pai-artist-large", "prompt": "亭台楼阁 <lora:poem:0.4>",
        "negative_prompt": "油画", "sampler": "DPM++ 2M", "schedule": "karras", "steps": 20,
        "guidance": 7.5, "seed": 1234, "width": 512, "height": 768,
        "loras": [{"name": "poem", "weight": 0.4, "hash": "abcdef012345"}]}


def _png(chunks: dict[str, str]) -> Image.Image:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_ours_come_back_exactly_with_a1111_text_beside_them():
    data = encode_png(GeneratedImage(Image.new("RGB", (8, 8)), 1234, OURS))
    found = read_image_parameters(Image.open(io.BytesIO(data)))
    assert found.source == "huajing" and found.parameters == OURS
    assert "Schedule type: Karras" in found.text
    assert 'Lora hashes: "poem: abcdef012345"' in found.text


def test_a1111_infotext():
    text = ("a cat\nNegative prompt: ugly\nSteps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7.5, "
            "Seed: 99, Size: 512x768, Model hash: 6ce0161689, Model: anything-v5")
    found = read_image_parameters(_png({"parameters": text}))
    assert found.source == "a1111"
    assert (found.parameters["sampler"], found.parameters["schedule"]) == ("DPM++ 2M", "karras")
    assert (found.parameters["width"], found.parameters["height"]) == (512, 768)


def test_comfyui_node_graph():
    graph = {
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 5, "steps": 25, "cfg": 6.5, "sampler_name": "euler_ancestral",
            "scheduler": "karras", "positive": ["6", 0], "negative": ["7", 0]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 640, "height": 448}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "雪山"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "模糊"}},
    }
    found = read_image_parameters(_png({"prompt": json.dumps(graph), "workflow": "{}"}))
    assert found.source == "comfyui"
    assert found.parameters == {"prompt": "雪山", "negative_prompt": "模糊", "seed": 5,
                                "steps": 25, "guidance": 6.5, "sampler": "Euler a",
                                "schedule": "karras", "width": 640, "height": 448}


def test_nothing_or_garbage_gives_none():
    assert read_image_parameters(_png({})) is None
    assert read_image_parameters(_png({"prompt": "not json", "huajing": "[1, 2"})) is None
