"""The manifest: typed, strict, complete for the PAI family, with errors that name the entry."""

from __future__ import annotations

import pytest
import yaml

from engine.settings import DEFAULT_MANIFEST
from engine.store.manifest import ManifestError, ModelKind, load_manifest, parse_manifest

PAI_REPOS = {
    "alibaba-pai/pai-diffusion-artist-large-zh", "alibaba-pai/pai-diffusion-artist-xlarge-zh",
    "alibaba-pai/pai-diffusion-anime-large-zh", "alibaba-pai/pai-diffusion-food-large-zh",
    "alibaba-pai/pai-diffusion-general-large-zh", "alibaba-pai/pai-diffusion-general-xlarge-zh",
    "IDEA-CCNL/Taiyi-Stable-Diffusion-1B-Chinese-v0.1",
}


@pytest.fixture(scope="module")
def manifest():
    return load_manifest(DEFAULT_MANIFEST)


def test_every_model_of_the_brief_is_listed(manifest):
    assert {e.repo for e in manifest.of_kind(ModelKind.BASE)} == PAI_REPOS
    controlnets = {e.repo: (e.base, e.control_type) for e in manifest.of_kind(ModelKind.CONTROLNET)}
    assert controlnets == {
        "alibaba-pai/pai-diffusion-artist-large-zh-controlnet-canny": ("pai-artist-large", "canny"),
        "alibaba-pai/pai-diffusion-artist-large-zh-controlnet-depth": ("pai-artist-large", "depth"),
        "alibaba-pai/pai-diffusion-general-large-zh-controlnet-depth": ("pai-general-large",
                                                                        "depth"),
    }
    loras = [e for e in manifest.of_kind(ModelKind.LORA) if e.base is not None]
    assert {e.repo.rsplit("-", 1)[1] for e in loras} == {"poem", "25d"}
    assert all(e.recommended.lora_weight == 0.4 and e.base == "pai-artist-large" for e in loras)


def test_few_step_loras_follow_their_cards(manifest):
    few_step = {e.id: (e.repo, e.weight_file, e.license,
                       e.recommended.model_dump(exclude_none=True))
                for e in manifest.of_kind(ModelKind.LORA) if e.prescribes_sampling}
    assert few_step == {
        "lcm-lora-sd15": ("latent-consistency/lcm-lora-sdv1-5",
                          "pytorch_lora_weights.safetensors", "openrail++",
                          {"sampler": "LCM", "schedule": "automatic", "steps": 4,
                           "guidance": 1.0, "lora_weight": 1.0}),
        "tcd-lora-sd15": ("h1t/TCD-SD15-LoRA", "pytorch_lora_weights.safetensors", "mit",
                          {"sampler": "TCD", "schedule": "automatic", "steps": 4,
                           "guidance": 1.0, "lora_weight": 1.0}),
        "hyper-sd15-8steps-lora": ("ByteDance/Hyper-SD", "Hyper-SD15-8steps-lora.safetensors",
                                   "openrail++",
                                   {"sampler": "DDIM", "schedule": "sgm_uniform", "steps": 8,
                                    "guidance": 1.0, "lora_weight": 1.0}),
    }
    for model_id in few_step:
        entry = manifest.get(model_id)
        assert entry.base is None and entry.base_family.value == "sd15"
        assert entry.base_label == "SD 1.5" and not entry.sha256
        # The model card does not promise PAI's Chinese UNet anything: the entry says so.
        assert "unverified" in entry.description.en and "未经验证" in entry.description.zh


def test_default_sizes_follow_the_cards(manifest):
    sizes = {e.id: (e.default_size.width, e.default_size.height)
             for e in manifest.of_kind(ModelKind.BASE)}
    assert sizes["pai-artist-xlarge"] == (768, 768)
    assert sizes["pai-anime-large"] == (512, 768)
    assert sizes["pai-artist-large"] == (512, 512)


def test_every_entry_has_both_languages_and_examples(manifest):
    for entry in manifest.models:
        assert entry.name.zh and entry.name.en and entry.description.zh and entry.license
        # Preprocessor weights and the preview decoder make no pictures of their own.
        assert entry.examples or entry.kind in (ModelKind.ANNOTATOR,
                                                ModelKind.PREVIEW_DECODER), entry.id


def test_annotators_take_a_few_files_into_a_cache_folder_of_their_own(manifest):
    annotators = manifest.of_kind(ModelKind.ANNOTATOR)
    assert annotators and all(e.repo == "lllyasviel/Annotators" and e.files for e in annotators)
    folders = {e.cache_repo for e in annotators}
    assert len(folders) == len(annotators) and "lllyasviel/Annotators" not in folders
    assert all(e.cache_repo == e.repo for e in manifest.models if not e.files)


@pytest.mark.parametrize("files, fragment", [
    ([], "lists the files"), (["../evil.pth"], "plain file names"),
    (["sub/sk_model.pth"], "plain file names"),
])
def test_bad_annotator_files_are_refused(files, fragment):
    def change(entry, data):
        annotator = next(e for e in data["models"] if e["kind"] == "annotator")
        annotator["files"] = files

    error = _error(_with_first_entry(change))
    assert error.params["entry"].startswith("annotator-") and fragment in error.params["detail"]


def test_only_annotators_list_files():
    error = _error(_with_first_entry(lambda entry, _: entry.update(files=["a.bin"])))
    assert "only an annotator" in error.params["detail"]


def test_lookup_by_id_or_repo(manifest):
    assert manifest.get("pai-artist-large") is manifest.get(
        "alibaba-pai/pai-diffusion-artist-large-zh")
    assert [e.id for e in manifest.for_base("pai-artist-large", ModelKind.CONTROLNET)] == [
        "pai-artist-large-controlnet-canny", "pai-artist-large-controlnet-depth"]


def _with_first_entry(change) -> str:
    data = yaml.safe_load(DEFAULT_MANIFEST.read_text(encoding="utf-8"))
    change(data["models"][0], data)
    return yaml.safe_dump(data, allow_unicode=True)


def _error(text: str) -> ManifestError:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text)
    return caught.value


def test_unknown_key_names_the_entry():
    error = _error(_with_first_entry(lambda entry, _: entry.update(colour="red")))
    assert error.code == "manifest_invalid" and error.params["entry"] == "pai-artist-large"
    assert "colour" in error.params["detail"]


def test_unknown_top_level_key():
    error = _error(_with_first_entry(lambda _, data: data.update(extra=1)))
    assert error.params["entry"] == "(file)"


def test_yaml_tags_are_not_run():
    error = _error("version: 1\nmodels: !!python/object/apply:os.system ['echo hi']\n")
    assert error.params["entry"] == "(file)"


@pytest.mark.parametrize("change, fragment", [
    (lambda e, _: e.update(default_size={"width": 500, "height": 512}), "default_size"),
    (lambda e, _: e.pop("default_size"), "default_size"),
    (lambda e, _: e.update(kind="vae"), "kind"),
    (lambda e, _: e.update(repo="not a repo"), "repo"),
])
def test_bad_fields_name_the_entry(change, fragment):
    error = _error(_with_first_entry(change))
    assert error.params["entry"] == "pai-artist-large" and fragment in error.params["detail"]


def _change_entry(model_id: str, **fields):
    def change(entry, data):
        target = next(e for e in data["models"] if e["id"] == model_id)
        for key, value in fields.items():
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value

    return change


@pytest.mark.parametrize("model_id, fields, fragment", [
    ("lcm-lora-sd15", {"recommended": {"sampler": "LCM fast", "steps": 4, "guidance": 1.0}},
     "unknown sampler 'LCM fast'"),
    ("lcm-lora-sd15", {"recommended": {"sampler": "LCM", "schedule": "trailing", "steps": 4,
                                       "guidance": 1.0}}, "unknown schedule 'trailing'"),
    ("lcm-lora-sd15", {"recommended": {"sampler": "LCM", "schedule": "karras", "steps": 4,
                                       "guidance": 1.0}}, "does not offer the schedule 'karras'"),
    ("lcm-lora-sd15", {"recommended": {"sampler": "LCM", "guidance": 1.0}},
     "names steps and guidance too"),
    ("lcm-lora-sd15", {"base": "pai-artist-large"}, "either the base"),
    ("lcm-lora-sd15", {"base_family": None}, "either the base"),
    ("lcm-lora-sd15", {"base_family": "sdxl"}, "base_family"),
    ("pai-artist-large", {"base_family": "sd15"}, "a base model has no base_family"),
    ("annotator-hed", {"base_family": "sd15"}, "an annotator has no base"),
])
def test_bad_sampling_and_families_name_the_entry(model_id, fields, fragment):
    error = _error(_with_first_entry(_change_entry(model_id, **fields)))
    assert error.params["entry"] == model_id and fragment in error.params["detail"], error.params


def test_references_and_duplicates():
    def bad_base(entry, data):
        next(e for e in data["models"] if e["id"] == "pai-artist-large-lora-25d")["base"] = (
            "no-such-base")

    assert _error(_with_first_entry(bad_base)).params["entry"] == "pai-artist-large-lora-25d"

    def duplicate(entry, data):
        data["models"].append(dict(entry))

    assert "twice" in _error(_with_first_entry(duplicate)).params["detail"]
