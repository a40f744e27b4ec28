"""A schema-driven fuzz run: bodies drawn from the API's own OpenAPI schema, sent to every
route; whatever comes in, nothing answers 500."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.routes import ApiOptions, install
from engine.fake_engine import fake_image_service

SCALARS = {
    "string": st.one_of(st.text(max_size=30), st.sampled_from(["", "demo", "canny", "Euler a"])),
    "integer": st.integers(-(2**33), 2**33),
    "number": st.floats(allow_nan=False, allow_infinity=False, width=32),
    "boolean": st.booleans(),
    "null": st.none(),
}


def strategy_for(schema: dict, components: dict, depth: int = 0):
    """Values of the JSON schema's shape (and, as clients do, sometimes of the wrong one)."""
    if "$ref" in schema:
        return strategy_for(components[schema["$ref"].rsplit("/", 1)[1]], components, depth)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return st.one_of([strategy_for(option, components, depth) for option in options])
    kind = schema.get("type")
    if kind == "array" and depth < 2:
        return st.lists(strategy_for(schema.get("items", {}), components, depth + 1),
                        max_size=3)
    if kind == "object" and depth < 2:
        properties = schema.get("properties", {})
        return st.fixed_dictionaries({}, optional={
            name: strategy_for(sub, components, depth + 1) for name, sub in properties.items()})
    return SCALARS.get(kind, st.one_of(*SCALARS.values()))


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    app = FastAPI()
    service, _engine = fake_image_service(tmp_path_factory.mktemp("fuzz"))
    install(app, service, ApiOptions())
    client = TestClient(app)
    schema = app.openapi()
    return client, schema


def _json_routes(schema: dict) -> list[tuple[str, str, dict]]:
    routes = []
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            routes.append((method, path, body["schema"] if body else {}))
    return routes


def test_the_schema_lists_the_a1111_routes(api):
    _, schema = api
    paths = set(schema["paths"])
    assert {"/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/sdapi/v1/options", "/sdapi/v1/progress",
            "/sdapi/v2/jobs", "/sdapi/v2/jobs/{job_id}", "/controlnet/detect"} <= paths


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_route_answers_500(api, data):
    client, schema = api
    components = schema.get("components", {}).get("schemas", {})
    method, path, body_schema = data.draw(st.sampled_from(_json_routes(schema)))
    path = path.replace("{job_id}", data.draw(st.text("abcdef0123456789", max_size=32)))
    kwargs = {}
    if body_schema:
        kwargs["json"] = data.draw(strategy_for(body_schema, components))
    if method == "delete":
        kwargs.pop("json", None)
    response = client.request(method.upper(), path, **kwargs)
    assert response.status_code < 500 or response.status_code == 503, (
        method, path, kwargs, response.text)


MALFORMED_SCRIPTS = [
    [], 5, "controlnet", {"controlnet": 5}, {"controlnet": "x"}, {"controlnet": []},
    {"controlnet": {"args": "x"}}, {"controlnet": {"args": 5}}, {"controlnet": {"args": {}}},
    {"controlnet": {"args": [5]}}, {"controlnet": {"args": ["x"]}}, {"controlnet": {"args": [[]]}},
    {"controlnet": {"args": [{"weight": "abc"}]}}, {"controlnet": {"args": [{"module": ["x"]}]}},
    {"controlnet": {"args": [{"module": {}}]}}, {"controlnet": {"args": [{"model": 5}]}},
    {"controlnet": {"args": [{"image": 5}]}}, {"controlnet": {"args": [{"image": ["x"]}]}},
    {"controlnet": {"args": [{"enabled": "maybe"}]}},
    {"controlnet": {"args": [{"threshold_a": "low"}]}},
    {"controlnet": {"args": [{"guidance_start": {}}]}},
]


@pytest.mark.parametrize("route", ["/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/sdapi/v2/jobs"])
@pytest.mark.parametrize("scripts", MALFORMED_SCRIPTS)
def test_malformed_alwayson_scripts_are_a_422_not_a_500(api, route, scripts):
    client, _ = api
    response = client.post(route, json={"prompt": "山", "steps": 2, "width": 64, "height": 64,
                                        "alwayson_scripts": scripts})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_body"


def test_other_scripts_of_any_shape_are_ignored(api):
    client, _ = api
    response = client.post("/sdapi/v1/txt2img", json={
        "prompt": "山", "steps": 2, "width": 64, "height": 64,
        "alwayson_scripts": {"ADetailer": 5, "controlnet": {"args": []}}})
    assert response.status_code == 200, response.text
