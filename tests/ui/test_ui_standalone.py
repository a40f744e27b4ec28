"""Each generation tab runs alone (``python -m ui.<tab>``) over the real service and the
torch-free fake engine: the way a developer works on one tab."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.ui_client import by_keys, call, free_port

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90


def _serve_alone(module: str, port: int) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", module, "--port", str(port)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{module} stopped: {process.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/config", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise AssertionError(f"{module} did not serve within {START_TIMEOUT_S} s")


@pytest.mark.servers
@pytest.mark.parametrize("tab", ["txt2img", "img2img", "controlnet"])
def test_a_generation_tab_serves_alone_with_its_generate_event(tab):
    port = free_port()
    process = _serve_alone(f"ui.{tab}_tab", port)
    try:
        config = httpx.get(f"http://127.0.0.1:{port}/config", timeout=10).json()
        api_names = {dependency.get("api_name") for dependency in config["dependencies"]}
        assert {tab, "interrupt", "skip"} <= api_names
        assert "model-picker" in json.dumps(config)  # the picker the request's model is from
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.servers
def test_txt2img_alone_generates_over_the_fake_engine():
    from gradio_client import Client

    port = free_port()
    process = _serve_alone("ui.txt2img_tab", port)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        result = call(client, "/txt2img", **by_keys(
            common__prompt="山水", common__width=64, common__height=64, common__steps=2,
            common__seed=3, common__batch_count=1, common__batch_size=2))
        client.close()
        assert len(result[0]) == 2  # the gallery: two images, from the fake engine
        assert result[1].splitlines()[0] == "山水"  # the infotext the real builder wrote
    finally:
        process.terminate()
        process.wait(timeout=30)
