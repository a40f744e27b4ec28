"""A tiny random-weight replica of the ``lllyasviel/Annotators`` hub repo.

It holds the weight files controlnet-aux asks for, under the same names and in the same
formats (a bare state dict, or PiDiNet's ``{"state_dict": ...}`` with ``module.`` prefixes),
built from controlnet-aux's own network classes with random initial values. So the real
``XxxDetector.from_pretrained(folder)`` code loads them, offline, and the detectors run; their
maps are noise. ``place_annotators_in_hub_cache`` files each manifest annotator's share of the
folder in a hub cache, where ``ModelStore`` looks for that model; a ``HubServer`` can also serve
the folder as the repo itself, for download tests.

The network shapes are fixed by controlnet-aux (there is no config to shrink them), so most
files have their real size (about 75 MB in all). MiDaS DPT-Hybrid would be about 490 MB; its
tensors are stored as strided views over small random storages instead (see ``_compact``),
which keeps the file at a few MB while ``torch.load`` + ``load_state_dict`` stay the real ones.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from engine.store.manifest import ManifestEntry

logger = logging.getLogger(__name__)

ANNOTATORS_REPO = "lllyasviel/Annotators"

# The default filenames of controlnet-aux 0.0.10's from_pretrained for this repo.
LINEART_FILE = "sk_model.pth"
LINEART_COARSE_FILE = "sk_model2.pth"
HED_FILE = "ControlNetHED.pth"
PIDINET_FILE = "table5_pidinet.pth"
MLSD_FILE = "mlsd_large_512_fp32.pth"
MIDAS_FILE = "dpt_hybrid-midas-501f0c75.pt"

# Tensors up to this size are stored as they are; only larger ones are compacted.
_COMPACT_ABOVE = 4096
# Each row of a compacted tensor starts this many values after the previous one. A prime
# above 1 keeps neighbouring rows (output channels) from being plain shifts by one.
_ROW_STRIDE = 7


def _dense_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}


def _contiguous_strides(shape: tuple[int, ...]) -> list[int]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return list(reversed(strides))


def _compact(tensor: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random tensor of ``tensor``'s shape and scale whose storage is ~one row long.

    Row ``i`` is a window starting ``_ROW_STRIDE * i`` into one random vector. ``torch.save``
    writes a view's storage, not its expanded values, so a 3072x768 matrix costs about
    3072 * 7 + 768 floats. The values keep the mean and spread of the layer's own initial
    values, so activations stay in the range the network was built for.
    """
    if tensor.dim() < 2 or tensor.numel() <= _COMPACT_ABOVE or not tensor.is_floating_point():
        return tensor.detach().clone().contiguous()
    rows, row_size = tensor.shape[0], tensor[0].numel()
    length = row_size + _ROW_STRIDE * (rows - 1)
    std, mean = tensor.float().std().item(), tensor.float().mean().item()
    storage = torch.randn(length, generator=generator) * (std or 1e-3) + mean
    strides = [_ROW_STRIDE] + _contiguous_strides(tuple(tensor.shape[1:]))
    return storage.to(tensor.dtype).as_strided(tuple(tensor.shape), strides)


def _save(state: dict, path: Path) -> None:
    torch.save(state, path)
    logger.debug("wrote %s (%.1f MB)", path.name, path.stat().st_size / 1e6)


def _write_lineart(folder: Path) -> None:
    from controlnet_aux.lineart import Generator

    # LineartDetector builds Generator(3, 1, 3) for both the fine and the coarse model.
    _save(_dense_state(Generator(3, 1, 3)), folder / LINEART_FILE)
    _save(_dense_state(Generator(3, 1, 3)), folder / LINEART_COARSE_FILE)


def _write_hed(folder: Path) -> None:
    from controlnet_aux.hed import ControlNetHED_Apache2

    network = ControlNetHED_Apache2()
    # ``norm`` starts at zero; a random mean colour makes it a real input of the model.
    with torch.no_grad():
        network.norm.copy_(torch.rand(network.norm.shape) * 255.0)
    # The real file is float16 (29 MB); the loader casts it back with ``.float()``.
    _save({k: v.half() for k, v in _dense_state(network).items()}, folder / HED_FILE)


def _write_pidinet(folder: Path) -> None:
    from controlnet_aux.pidi.model import pidinet

    # The real checkpoint comes from a DataParallel training run: it is wrapped in
    # {"state_dict": ...} and every key has a ``module.`` prefix that the loader strips.
    state = {"module." + k: v for k, v in _dense_state(pidinet()).items()}
    _save({"state_dict": state}, folder / PIDINET_FILE)


def _write_mlsd(folder: Path) -> None:
    from controlnet_aux.mlsd.models.mbv2_mlsd_large import MobileV2_MLSD_Large

    _save(_dense_state(MobileV2_MLSD_Large()), folder / MLSD_FILE)


def _write_midas(folder: Path, seed: int) -> None:
    from controlnet_aux.midas.midas.dpt_depth import DPTDepthModel

    # The same constructor call as controlnet_aux.midas.api.load_model("dpt_hybrid"), minus
    # the path (which would load weights). path=None makes timm build the backbone randomly.
    network = DPTDepthModel(path=None, backbone="vitb_rn50_384", non_negative=True)
    # The head ends in conv -> ReLU. With a random negative bias every pixel can come out as
    # 0, and MidasDetector's min/max normalisation then turns the map into NaN. A positive
    # bias keeps the depth above zero, so the map follows the input.
    with torch.no_grad():
        network.scratch.output_conv[4].bias.fill_(0.1)
    generator = torch.Generator().manual_seed(seed)
    state = {k: _compact(v, generator) for k, v in network.state_dict().items()}
    _save(state, folder / MIDAS_FILE)


_WRITERS: tuple[Callable[[Path], None], ...] = (_write_lineart, _write_hed, _write_pidinet,
                                                _write_mlsd)


def write_tiny_annotators_repo(folder: Path, seed: int = 0) -> Path:
    """Write the replica's weight files into ``folder`` (created if needed) and return it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # The networks draw their initial values from torch's global generator: seed it for a
    # repeatable replica, inside fork_rng so that the caller's random state is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for write in _WRITERS:
            write(folder)
        _write_midas(folder, seed + 1)
    logger.info("wrote a tiny %s replica to %s", ANNOTATORS_REPO, folder)
    return folder


def place_annotators_in_hub_cache(folder: Path, entries: Iterable[ManifestEntry],
                                  cache_dir: Path) -> None:
    """Each annotator entry's files of the replica ``folder``, as a download of that entry
    would leave them in ``cache_dir`` (under its own cache folder, ``entry.cache_repo``)."""
    from engine.demo.tiny_models import place_in_hub_cache

    for entry in entries:
        with tempfile.TemporaryDirectory() as scratch:
            for name in entry.files:
                shutil.copyfile(Path(folder) / name, Path(scratch) / name)
            place_in_hub_cache(Path(scratch), entry.cache_repo, cache_dir)
