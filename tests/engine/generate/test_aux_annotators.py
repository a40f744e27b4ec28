"""The controlnet-aux preprocessors, loaded by controlnet-aux's own code, fully offline.

A tiny random-weight replica of ``lllyasviel/Annotators`` is filed in a temporary hub cache as
the manifest's annotator models; ``from_pretrained`` loads each from its folder there. The maps
are noise, so the tests check shape, colour mode, dependence on the input and determinism, not
content.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.errors import InvalidRequest, ModelError
from engine.generate.aux_annotators import AUX_ANNOTATORS, AuxAnnotators
from engine.settings import DEFAULT_MANIFEST
from engine.store.manifest import ModelKind, load_manifest
from engine.store.model_store import ModelStore
from tests.support.tiny_repos import make_settings

RESOLUTION = 128
# Not a multiple of 64 and not square: detectors return another size, run() must undo that.
IMAGE_SIZE = (150, 100)

# Importing controlnet-aux warns about optional packages and timm renames; not ours to fix.
pytestmark = [
    pytest.mark.filterwarnings(f"ignore::{category}:{module}")
    for category in ("UserWarning", "FutureWarning", "DeprecationWarning")
    for module in ("controlnet_aux", "timm", "torch")
]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test may reach the hub. huggingface_hub reads HF_HUB_OFFLINE once, at import."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def store_at(tiny_repos, hub_cache: Path) -> ModelStore:
    return ModelStore(make_settings(tiny_repos, hub_cache_dir=hub_cache),
                      load_manifest(DEFAULT_MANIFEST))


@pytest.fixture(scope="module")
def store(tiny_repos) -> ModelStore:
    return store_at(tiny_repos, tiny_repos.hub_cache)  # its replicas include the annotators


@pytest.fixture(scope="module")
def annotators(store) -> AuxAnnotators:
    # One instance for the module, so each detector is loaded once for all tests.
    return AuxAnnotators(store.complete_folder)


def _noise_image(seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (IMAGE_SIZE[1], IMAGE_SIZE[0], 3))
    return Image.fromarray(pixels.astype(np.uint8))


def _shapes_image() -> Image.Image:
    """Flat areas and straight edges, unlike the noise image."""
    pixels = np.zeros((IMAGE_SIZE[1], IMAGE_SIZE[0], 3), dtype=np.uint8)
    pixels[:, :, 2] = np.linspace(0, 255, IMAGE_SIZE[0], dtype=np.uint8)
    pixels[20:80, 30:120] = (240, 200, 30)
    pixels[45:55, :] = (10, 120, 250)
    return Image.fromarray(pixels)


@pytest.mark.parametrize("name", sorted(AUX_ANNOTATORS))
def test_map_is_rgb_input_sized_input_dependent_and_deterministic(annotators, name):
    noise, shapes = _noise_image(1), _shapes_image()

    first = annotators.run(name, noise, RESOLUTION)
    again = annotators.run(name, noise, RESOLUTION)
    other = annotators.run(name, shapes, RESOLUTION)

    for result in (first, again, other):
        assert isinstance(result, Image.Image)
        assert result.mode == "RGB"
        assert result.size == IMAGE_SIZE
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))


def test_detectors_are_loaded_once_even_from_threads(store, monkeypatch):
    annotators = AuxAnnotators(store.complete_folder)
    loads = []
    real_load = annotators._load
    monkeypatch.setattr(annotators, "_load", lambda *args: loads.append(args) or real_load(*args))
    names = ["lineart", "lineart_coarse"] * 3
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        results = list(pool.map(lambda n: annotators.run(n, _noise_image(2), 64), names))
    # lineart and lineart_coarse share one LineartDetector, loaded by one thread only.
    assert len(loads) == 1
    assert all(result.size == IMAGE_SIZE for result in results)


def test_unknown_name_is_an_invalid_request(annotators):
    with pytest.raises(InvalidRequest) as caught:
        annotators.run("no_such_preprocessor", _noise_image(5), RESOLUTION)
    assert caught.value.code == "unknown_preprocessor"
    assert caught.value.params == {"name": "no_such_preprocessor"}


def test_resolution_out_of_range_is_an_invalid_request(annotators):
    with pytest.raises(InvalidRequest) as caught:
        annotators.run("shuffle", _noise_image(6), 8)
    assert caught.value.code == "invalid_resolution"


def test_empty_cache_means_not_downloaded_naming_the_model_to_download(tiny_repos, tmp_path):
    annotators = AuxAnnotators(store_at(tiny_repos, tmp_path / "empty").complete_folder)
    with pytest.raises(ModelError) as caught:
        annotators.run("softedge_hed", _noise_image(7), RESOLUTION)
    assert caught.value.code == "model_not_downloaded"
    assert caught.value.params == {"name": "annotator-hed", "repo": "lllyasviel/Annotators",
                                   "size": "0.03"}


def test_a_missing_weight_file_is_incomplete_and_never_fetched(tiny_repos, tmp_path):
    """MiDaS downloads a missing file itself (from GitHub): it must never be asked to."""
    from engine.demo.tiny_annotators import place_annotators_in_hub_cache

    store = store_at(tiny_repos, tmp_path / "cache")
    entry = store.manifest.get("annotator-midas")
    place_annotators_in_hub_cache(tiny_repos.annotators, [entry], store.cache_root)
    (store.local_snapshot(entry) / entry.files[0]).unlink()
    with pytest.raises(ModelError) as caught:
        AuxAnnotators(store.complete_folder).run("depth_midas", _noise_image(7), RESOLUTION)
    assert caught.value.code == "model_incomplete"
    assert caught.value.params["name"] == "annotator-midas"


def test_every_detector_has_its_files_in_the_manifest():
    """The manifest lists exactly the files controlnet-aux 0.0.10's from_pretrained reads."""
    from engine.demo import tiny_annotators as tiny

    manifest = load_manifest(DEFAULT_MANIFEST)
    expected = {"annotator-lineart": {tiny.LINEART_FILE, tiny.LINEART_COARSE_FILE},
                "annotator-hed": {tiny.HED_FILE}, "annotator-pidinet": {tiny.PIDINET_FILE},
                "annotator-mlsd": {tiny.MLSD_FILE}, "annotator-midas": {tiny.MIDAS_FILE}}
    assert {e.id: set(e.files) for e in manifest.of_kind(ModelKind.ANNOTATOR)} == expected
    assert {a.weights for a in AUX_ANNOTATORS.values()} == set(expected) | {None}


def test_shuffle_needs_no_weights(tiny_repos, tmp_path):
    annotators = AuxAnnotators(store_at(tiny_repos, tmp_path / "empty").complete_folder)
    assert annotators.run("shuffle", _noise_image(8), 64).size == IMAGE_SIZE


def test_shuffle_leaves_numpy_random_state_alone(annotators):
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    annotators.run("shuffle", _noise_image(9), RESOLUTION)
    assert np.random.random() == expected


def test_weights_only_override_refuses_annotator_pickles(store, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(ModelError) as caught:
        AuxAnnotators(store.complete_folder).run("lineart", _noise_image(3), RESOLUTION)
    assert caught.value.code == "weights_only_disabled"


def test_the_contract_lists_exactly_the_detectors_the_engine_runs():
    """The validator, the UI and the API offer ``engine.control_types``; the engine runs
    ``AUX_ANNOTATORS``: a detector added to one only would be offered and fail, or never offered."""
    from engine.control_types import AUX_CONTROL_TYPES

    assert AUX_CONTROL_TYPES == tuple(AUX_ANNOTATORS)
