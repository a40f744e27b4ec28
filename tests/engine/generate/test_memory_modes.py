"""Memory modes as models load, and the full VAE decode in tiles above 1024x1024.

This machine has no CUDA device: diffusers' offload calls cannot run here. The choice and the
calls are tested on a stand-in pipeline with CUDA's free memory faked; on the CPU the real
tiny engine shows the mode in its device report."""

from __future__ import annotations

import pytest
import torch

from engine.errors import InvalidRequest
from engine.generate import memory
from engine.generate.devices import Placement
from engine.generate.engine import Engine
from engine.memory_plan import GIB, MemoryChoice, ModelMemory, activation_margin
from engine.settings import MEMORY_MODES
from tests.support.helpers import run, txt2img
from tests.support.tiny_repos import make_settings

CUDA_FP16 = Placement(torch.device("cuda"), torch.float16)


class _StandInVae:
    def __init__(self) -> None:
        self.slicing = False

    def enable_slicing(self) -> None:
        self.slicing = True


class StandInPipeline:
    """What ``place_pipeline`` uses of a diffusers pipeline, recording each call."""

    def __init__(self, unet_bytes: int, other_bytes: int) -> None:
        # fp16 parameters of the given sizes (2 bytes each), on the meta device: no memory.
        self.components = {
            "unet": torch.nn.Linear(unet_bytes // 2, 1, bias=False, device="meta",
                                    dtype=torch.float16),
            "text_encoder": torch.nn.Linear(other_bytes // 2, 1, bias=False, device="meta",
                                            dtype=torch.float16),
            "tokenizer": object(), "scheduler": object()}
        self.vae = _StandInVae()
        self.calls: list[tuple[str, object]] = []

    def to(self, device):
        self.calls.append(("to", device))

    def enable_model_cpu_offload(self, device=None):
        self.calls.append(("enable_model_cpu_offload", device))

    def enable_sequential_cpu_offload(self, device=None):
        self.calls.append(("enable_sequential_cpu_offload", device))


def _free(monkeypatch, free_bytes: int) -> None:
    monkeypatch.setattr(memory.torch.cuda, "mem_get_info",
                        lambda device=None: (free_bytes, 80 * GIB))


UNET, OTHER = 2 * GIB, 1 * GIB  # 3 GiB of weights; the UNet is the largest part


def test_the_footprint_counts_every_module_at_its_dtype():
    footprint = memory.pipeline_footprint(StandInPipeline(UNET, OTHER))
    assert (footprint.total_bytes, footprint.largest_part_bytes) == (UNET + OTHER, UNET)


@pytest.mark.parametrize(("free", "mode", "call"), [
    (UNET + OTHER + activation_margin(2), "gpu", "to"),
    (UNET + activation_margin(2), "model_offload", "enable_model_cpu_offload"),
    (UNET, "sequential_offload", "enable_sequential_cpu_offload"),
])
def test_auto_on_cuda_measures_decides_and_calls_diffusers(monkeypatch, free, mode, call):
    _free(monkeypatch, free)
    pipe = StandInPipeline(UNET, OTHER)
    choice = memory.place_pipeline(pipe, "auto", CUDA_FP16, "pai-artist-large")
    assert choice == MemoryChoice(mode, "auto", free, UNET + OTHER + activation_margin(2))
    assert pipe.calls == [(call, CUDA_FP16.device)]
    # Offloading modes decode a batch one image at a time; the full-GPU mode decodes it whole.
    assert pipe.vae.slicing is choice.offloads


@pytest.mark.parametrize("mode", ["gpu", "model_offload", "sequential_offload"])
def test_a_fixed_mode_is_applied_whatever_is_free(monkeypatch, mode):
    _free(monkeypatch, 100 * GIB if mode != "gpu" else 1)
    pipe = StandInPipeline(UNET, OTHER)
    assert memory.place_pipeline(pipe, mode, CUDA_FP16, "m").mode == mode
    expected = {"gpu": "to", "model_offload": "enable_model_cpu_offload",
                "sequential_offload": "enable_sequential_cpu_offload"}[mode]
    assert [name for name, _ in pipe.calls] == [expected]


@pytest.mark.parametrize("mode", MEMORY_MODES)
def test_on_the_cpu_every_mode_puts_the_weights_on_the_device(monkeypatch, mode):
    monkeypatch.setattr(memory.torch.cuda, "mem_get_info",
                        lambda device=None: pytest.fail("no CUDA to ask"))
    pipe = StandInPipeline(UNET, OTHER)
    cpu = Placement(torch.device("cpu"), torch.float32)
    assert memory.place_pipeline(pipe, mode, cpu, "m").mode == "device"
    assert pipe.calls == [("to", cpu.device)] and not pipe.vae.slicing


@pytest.mark.engine
def test_each_load_uses_the_mode_set_and_the_report_shows_it(tiny_repos, monkeypatch):
    engine = Engine(make_settings(tiny_repos, memory_mode="low"))  # an old settings file
    assert engine.pipelines.memory_mode == "model_offload"
    asked = []
    real = memory.place_pipeline

    def spy(pipe, requested, placement, name):
        asked.append(requested)
        return real(pipe, requested, placement, name)

    monkeypatch.setattr("engine.generate.pipelines.place_pipeline", spy)
    run(engine, txt2img(steps=1))
    engine.set_memory_mode("normal")  # an old API caller's name for "auto"
    assert engine.pipelines.loaded_models == ()  # released: the next load decides again
    run(engine, txt2img(steps=1))
    assert asked == ["model_offload", "auto"]
    # On the CPU nothing is offloaded, whatever the setting; the report names the model.
    assert engine.device_report().models == (
        ModelMemory("pai-artist-large", MemoryChoice("device", "auto")),)
    engine.unload_all()
    assert engine.device_report().models == ()


@pytest.mark.engine
def test_an_unknown_memory_mode_changes_nothing(engine):
    before = engine.pipelines.memory_mode
    with pytest.raises(InvalidRequest):
        engine.set_memory_mode("huge")
    assert engine.pipelines.memory_mode == before


# -- the full VAE decode in tiles above 1024x1024 ------------------------------------------
# The engine's decode stage on latents of the size (a whole job at 1088x1024 would spend
# minutes in the tiny UNet's attention on this CPU, and test nothing more about decoding).

def _decode(engine, monkeypatch, width: int, height: int):
    """Decode random latents for a ``width`` x ``height`` image; and the tiled calls seen (a
    spy on the VAE's tiled path, which ``decode`` takes only with tiling on)."""
    base = engine.pipelines.base("pai-artist-large")
    vae = base.pipe.vae
    calls: list[tuple] = []
    real = vae.tiled_decode

    def spy(z, *args, **kwargs):
        calls.append(tuple(z.shape))
        return real(z, *args, **kwargs)

    monkeypatch.setattr(vae, "tiled_decode", spy)
    # The real SD VAE's tiles (its config's sample_size 512); the tiny one's 64-pixel tiles
    # would make hundreds of them here.
    monkeypatch.setattr(vae, "tile_sample_min_size", 512)
    monkeypatch.setattr(vae, "tile_latent_min_size", 64)
    latents = torch.randn(1, 4, height // 8, width // 8, generator=torch.Generator().manual_seed(0))
    return engine._decode(base, latents), calls, vae


@pytest.mark.engine
def test_an_image_over_1024_squared_decodes_in_tiles(engine, monkeypatch):
    images, calls, vae = _decode(engine, monkeypatch, 1088, 1024)
    assert [image.size for image in images] == [(1088, 1024)]
    assert calls == [(1, 4, 128, 136)]
    assert not vae.use_tiling  # as it was: the next, smaller image decodes whole


@pytest.mark.engine
@pytest.mark.parametrize(("width", "height"), [(512, 512), (1024, 1024)])
def test_up_to_1024_squared_the_image_decodes_whole(engine, monkeypatch, width, height):
    images, calls, _ = _decode(engine, monkeypatch, width, height)
    assert [image.size for image in images] == [(width, height)]
    assert calls == []
