"""Saving images: names and folders as A1111 lays them out, metadata, threads and a full disk."""

from __future__ import annotations

import dataclasses
import errno
import threading
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from engine.errors import ResourceError
from engine.metadata import outputs
from engine.metadata.infotext import format_infotext, parse_infotext, read_png_parameters
from engine.metadata.outputs import save_generated, with_png
from engine.requests import GeneratedImage, GenerationResult, PromptInfo

DAY = datetime(2025, 3, 14, 15, 9, 26)
NEXT_DAY = datetime(2025, 3, 15, 0, 0, 1)


def _image(seed: int, prompt: str = "水墨山水，远山如黛", colour=(40, 80, 120)) -> GeneratedImage:
    parameters = {
        "mode": "img2img", "model": "pai-artist-large", "prompt": prompt,
        "negative_prompt": "模糊，低质量", "sampler": "DPM++ 2M", "schedule": "karras",
        "steps": 20, "guidance": 7.5, "seed": seed, "width": 64, "height": 48,
        "loras": [{"name": "诗意", "weight": 0.6}], "strength": 0.55, "version": "0.1.0"}
    return GeneratedImage(Image.new("RGB", (64, 48), colour), seed, parameters)


def _names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_saved_png_carries_the_parameters(tmp_path):
    image = _image(1234)
    [path] = save_generated([image], tmp_path, now=DAY)
    assert path == tmp_path / "2025-03-14" / "00000-1234.png"
    with Image.open(path) as reopened:
        text = read_png_parameters(reopened)
        assert reopened.size == (64, 48) and reopened.getpixel((3, 3)) == (40, 80, 120)
    assert text == format_infotext(image.parameters)
    parsed = parse_infotext(text)
    for key in ("prompt", "negative_prompt", "sampler", "schedule", "steps", "guidance", "seed",
                "width", "height", "model", "strength", "loras"):
        assert parsed[key] == image.parameters[key], key


def test_with_png_attaches_the_saved_bytes_and_saving_writes_them_as_they_are(tmp_path):
    info = PromptInfo(tokens=3, context_length=77, chunks=1)
    result = GenerationResult(images=(_image(7), _image(8)), control_map=None, warnings=(),
                              prompt_info=info, negative_prompt_info=info, duration_s=0.1)
    encoded = with_png(result)
    assert [image.png for image in encoded.images] == [
        outputs.encode_png(image) for image in result.images]
    assert with_png(encoded).images[0].png is encoded.images[0].png  # not encoded again

    marked = dataclasses.replace(encoded.images[0], png=b"the bytes the caller holds")
    [path] = save_generated([marked], tmp_path, now=DAY)
    assert path.read_bytes() == b"the bytes the caller holds"


def test_numbering_continues_across_calls_and_existing_files(tmp_path):
    first = save_generated([_image(1), _image(2)], tmp_path, now=DAY)
    second = save_generated([_image(3)], tmp_path, now=DAY)
    assert [path.name for path in first + second] == ["00000-1.png", "00001-2.png",
                                                      "00002-3.png"]
    (tmp_path / "2025-03-14" / "00041-99.png").write_bytes(b"")  # e.g. copied from A1111
    (tmp_path / "2025-03-14" / "notes.txt").write_text("not numbered")
    [path] = save_generated([_image(4)], tmp_path, now=DAY)
    assert path.name == "00042-4.png"


def test_each_day_has_its_own_folder_and_counter(tmp_path):
    save_generated([_image(1), _image(2)], tmp_path, now=DAY)
    [path] = save_generated([_image(3)], tmp_path, now=NEXT_DAY)
    assert path == tmp_path / "2025-03-15" / "00000-3.png"
    assert _names(tmp_path) == ["2025-03-14", "2025-03-15"]
    assert _names(tmp_path / "2025-03-14") == ["00000-1.png", "00001-2.png"]


def test_concurrent_saves_get_distinct_files(tmp_path):
    threads_count, per_thread = 8, 3
    barrier = threading.Barrier(threads_count)
    results: list[Path] = []
    errors: list[BaseException] = []

    def save(index: int) -> None:
        barrier.wait()  # start together, so the threads really race for numbers
        try:
            images = [_image(index * 100 + n) for n in range(per_thread)]
            results.extend(save_generated(images, tmp_path, now=DAY))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=save, args=(index,)) for index in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    total = threads_count * per_thread
    assert len(set(results)) == total
    folder = tmp_path / "2025-03-14"
    assert _names(folder) == sorted(path.name for path in results)  # no temp files left over
    assert sorted(name[:5] for name in _names(folder)) == [f"{n:05d}" for n in range(total)]


def test_a_full_disk_raises_save_failed_and_leaves_no_file(tmp_path, monkeypatch):
    save_generated([_image(1)], tmp_path, now=DAY)

    def disk_full(handle, data):
        handle.write(data[: len(data) // 2])  # part of the file reaches the disk first
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs, "_write_bytes", disk_full)
    with pytest.raises(ResourceError) as caught:
        save_generated([_image(2)], tmp_path, now=DAY)
    assert caught.value.code == "save_failed"
    assert caught.value.params == {"folder": str(tmp_path)}
    assert _names(tmp_path / "2025-03-14") == ["00000-1.png"]


def test_an_unwritable_output_folder_raises_save_failed(tmp_path):
    blocker = tmp_path / "outputs"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(ResourceError) as caught:
        save_generated([_image(1)], blocker, now=DAY)
    assert caught.value.code == "save_failed"


def test_a_number_held_by_another_writer_is_skipped(tmp_path):
    folder = tmp_path / "2025-03-14"
    folder.mkdir()
    (folder / ".00000.png.tmp").write_bytes(b"")  # another process is writing number 0
    [path] = save_generated([_image(5)], tmp_path, now=DAY)
    assert path.name == "00001-5.png"
