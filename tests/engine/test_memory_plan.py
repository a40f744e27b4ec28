"""The memory mode a model runs in, decided from the device's free memory and the model's
size: a pure function, tested without a GPU."""

from __future__ import annotations

import pytest

from engine.errors import InvalidRequest
from engine.memory_plan import (
    ACTIVATION_MARGIN_BYTES,
    GIB,
    MemoryChoice,
    ModelFootprint,
    activation_margin,
    checked_memory_mode,
    choose_memory_mode,
)
from engine.settings import MEMORY_MODES

# SD 1.5 in fp16 (brief/performance.md): UNet 1.64 GiB, text encoder 0.23, VAE 0.16.
SD15 = ModelFootprint(total_bytes=int(2.03 * GIB), largest_part_bytes=int(1.64 * GIB))


@pytest.mark.parametrize(("free_gib", "mode"), [
    (24.0, "gpu"),  # a big card: everything on it
    (5.1, "gpu"),  # just room for the weights and a job's working memory
    (5.0, "model_offload"),  # not quite: the UNet alone (and the margin) fits
    (4.7, "model_offload"),
    (4.6, "sequential_offload"),  # not even the UNet with the margin
    (1.0, "sequential_offload"),
])
def test_auto_picks_the_fastest_mode_that_fits_what_is_free(free_gib, mode):
    choice = choose_memory_mode("auto", "cuda", int(free_gib * GIB), SD15)
    assert choice == MemoryChoice(mode, "auto", int(free_gib * GIB),
                                  SD15.total_bytes + ACTIVATION_MARGIN_BYTES)


def test_the_boundary_is_weights_plus_margin_inclusive():
    needed = SD15.total_bytes + ACTIVATION_MARGIN_BYTES
    assert choose_memory_mode("auto", "cuda", needed, SD15).mode == "gpu"
    assert choose_memory_mode("auto", "cuda", needed - 1, SD15).mode == "model_offload"
    unet = SD15.largest_part_bytes + ACTIVATION_MARGIN_BYTES
    assert choose_memory_mode("auto", "cuda", unet, SD15).mode == "model_offload"
    assert choose_memory_mode("auto", "cuda", unet - 1, SD15).mode == "sequential_offload"


@pytest.mark.parametrize("mode", ["gpu", "model_offload", "sequential_offload"])
def test_a_fixed_mode_is_taken_as_chosen_on_cuda(mode):
    choice = choose_memory_mode(mode, "cuda", 1 * GIB, SD15)
    assert choice == MemoryChoice(mode, mode)  # no measurement: nothing was decided


@pytest.mark.parametrize("device", ["cpu", "mps"])
@pytest.mark.parametrize("mode", MEMORY_MODES)
def test_off_cuda_the_weights_are_simply_on_the_device(device, mode):
    choice = choose_memory_mode(mode, device, None, SD15)
    assert choice.mode == "device" and not choice.offloads


def test_fp32_needs_twice_the_margin():
    assert activation_margin(2) == ACTIVATION_MARGIN_BYTES
    assert activation_margin(4) == 2 * ACTIVATION_MARGIN_BYTES
    fp32 = ModelFootprint(2 * SD15.total_bytes, 2 * SD15.largest_part_bytes)
    free = fp32.total_bytes + ACTIVATION_MARGIN_BYTES  # enough with the fp16 margin only
    assert choose_memory_mode("auto", "cuda", free, fp32, activation_margin(4)).mode != "gpu"


@pytest.mark.parametrize(("given", "canonical"), [
    ("auto", "auto"), ("gpu", "gpu"), ("model_offload", "model_offload"),
    ("sequential_offload", "sequential_offload"),
    ("normal", "auto"), ("low", "model_offload"),  # what earlier versions saved
])
def test_old_mode_names_are_accepted_as_what_they_name(given, canonical):
    assert checked_memory_mode(given) == canonical


@pytest.mark.parametrize("bad", ["huge", "", None, 3, "Normal"])
def test_an_unknown_mode_is_refused_with_the_known_ones(bad):
    with pytest.raises(InvalidRequest) as caught:
        checked_memory_mode(bad)
    assert caught.value.code == "unknown_memory_mode"
    assert caught.value.params["known"] == ", ".join(MEMORY_MODES)
