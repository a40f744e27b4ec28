"""The WebUI: a header with the model picker, then one tab per task. ``build_ui`` only builds;
``app.py`` decides what service, preferences and language it gets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from app_settings import Preferences, PreferencesStore
from engine.downloads.sources import CUSTOM, DownloadSource
from engine.errors import NOT_ON_DISK, EngineError
from engine.interfaces import ImageServiceLike
from engine.store.manifest import ModelKind
from ui.access import Access
from ui.controlnet_tab import build_controlnet_tab
from ui.device_view import build_device_banner, build_device_section, wire_device_refresh
from ui.download_offer import DownloadOffer, build_download_offer, wire_download_offer
from ui.generation_panel import PanelContext
from ui.img2img_tab import build_img2img_tab
from ui.job_runner import GPU_QUEUE, JobRunner
from ui.lora_tab import build_lora_tab, wire_lora_apply
from ui.models_tab import build_models_tab
from ui.pnginfo_tab import build_pnginfo_tab, wire_send_parameters
from ui.session_view import SessionView, wire_session_view
from ui.settings_tab import build_settings_tab, wire_settings
from ui.size_sliders import SizeSliders
from ui.texts import Texts
from ui.txt2img_tab import build_txt2img_tab

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UiOptions:
    preferences: Preferences
    demo: bool = False
    gpu: Callable[[Callable], Callable] | None = None  # spaces.GPU on ZeroGPU Spaces
    source_flag: str | None = None  # --source wins over the saved choice
    hf_endpoint: str | None = None  # HF_ENDPOINT, used when nothing else is chosen
    access: Access = field(default_factory=Access)  # who may change the server's settings
    outputs_base: Path = Path("outputs")  # the output folder stays inside it
    allow_private_endpoint: bool = False  # --allow-private-endpoint

    def on_gpu(self, handler: Callable) -> Callable:
        return self.gpu(handler) if self.gpu else handler


def _source_chooser(options: UiOptions, store: PreferencesStore) -> Callable[[], DownloadSource]:
    """The download source now: the flag, else the saved 下载源, else HF_ENDPOINT."""
    def current() -> DownloadSource:
        saved = store.load()
        environ = {"HF_ENDPOINT": options.hf_endpoint} if options.hf_endpoint else {}
        kind = options.source_flag or saved.download_source
        endpoint = saved.custom_endpoint if kind == CUSTOM else None  # only the custom one's
        # Checked again at each use: the name may resolve elsewhere than when it was saved.
        return DownloadSource.from_choice(kind, endpoint, environ,
                                          allow_private=options.allow_private_endpoint)

    return current


def _model_choices(service: ImageServiceLike) -> Callable[[str], list[tuple[str, str]]]:
    def choices(language: str) -> list[tuple[str, str]]:
        from locales import translate

        manifest = [(e.name.text(language), e.id)
                    for e in service.entries(ModelKind.BASE)]
        # By their names inside the checkpoints folder, as the API lists them: no server path.
        own = [(translate(language, "app.local_model", name=Path(name).name), name)
               for name in service.local_model_names()]
        return manifest + own

    return choices


def _header(service: ImageServiceLike, texts: Texts, options: UiOptions) -> tuple[Any, Any]:
    """The title, the model picker and the banners: demo mode, and the device's when it
    matters."""
    with gr.Row(elem_id="huajing-header", equal_height=True):
        texts.make(gr.Markdown, text="app.title")
        choices = _model_choices(service)
        model = gr.Dropdown(choices=choices(texts.language), value=service.active_model,
                            label=texts("app.model"), scale=3, elem_id="model-picker")
        texts.bind(model, label="app.model", choices=choices)
    if options.demo:
        texts.make(gr.Markdown, text="app.demo_banner", elem_id="demo-banner")
    return model, build_device_banner(texts, service)


def _wire_model_switch(service: ImageServiceLike, texts: Texts, runner: JobRunner, model: Any,
                       size_sliders: SizeSliders, offer: DownloadOffer,
                       current_source: Callable[[], DownloadSource], access: Access) -> None:
    def switch(model_id: str, request: gr.Request, progress=gr.Progress()):
        progress(0, desc=texts("app.loading_model"))
        try:
            runner.switch_model(model_id, request, progress)
        except EngineError as error:
            # Only an admin may download: others hear that the model is not there.
            if error.code not in NOT_ON_DISK or not access.is_admin(request):
                raise texts.engine_failure(error) from None
            # First use of a model not on disk: ask before downloading anything.
            try:
                source = current_source()
            except EngineError as bad_source:  # e.g. an HF_ENDPOINT without http(s)://
                raise texts.engine_failure(bad_source) from None
            return {**size_sliders.unchanged(),
                    **offer.shown_for(service, texts, model_id, source)}
        width, height = service.default_size(model_id)
        return {**size_sliders.set_to(width, height), **offer.hidden()}

    model.change(switch, inputs=model, outputs=[*size_sliders.components(), *offer.outputs()],
                 concurrency_id=GPU_QUEUE, concurrency_limit=1, api_name="switch_model")
    wire_download_offer(service, texts, runner, offer, model, size_sliders, current_source,
                        access)


def _wire_send_image(gallery: Any, button: Any, target: Any, tabs: Any, tab_id: str) -> None:
    """Send the selected (else the first) result image to another tab's image input."""
    selected = gr.State(0)

    def remember(event: gr.SelectData) -> int:
        return event.index

    def send(items: list | None, index: int):
        if not items:
            return {target: gr.skip(), tabs: gr.skip()}
        image, _caption = items[min(index, len(items) - 1)]
        return {target: image, tabs: gr.Tabs(selected=tab_id)}

    gallery.select(remember, outputs=selected, queue=False)
    gallery.change(lambda: 0, outputs=selected, queue=False)
    button.click(send, inputs=[gallery, selected], outputs=[target, tabs], queue=False)


def _tab(texts: Texts, key: str, tab_id: str) -> Any:
    tab = gr.Tab(texts(key), id=tab_id, elem_id=f"tab-{tab_id}")
    texts.bind(tab, label=key)
    return tab


def build_ui(service: ImageServiceLike, options: UiOptions,
             store: PreferencesStore) -> gr.Blocks:
    preferences, access = options.preferences, options.access
    texts = Texts(preferences.language)
    runner = JobRunner(service, texts, shared=not options.access.local_admin)
    # Uploads and results in Gradio's cache are removed after a day, checked every hour.
    with gr.Blocks(title="画境 Huajing", analytics_enabled=False,
                   delete_cache=(3600, 86400)) as demo:
        model, device_banner = _header(service, texts, options)
        context = PanelContext(service, texts, runner, model, preferences.default_sampler,
                               options.on_gpu)
        offer = build_download_offer(texts)
        current_source = _source_chooser(options, store)
        with gr.Tabs(elem_id="main-tabs") as tabs:
            with _tab(texts, "tabs.txt2img", "txt2img"):
                txt2img = build_txt2img_tab(context)
            with _tab(texts, "tabs.img2img", "img2img"):
                img2img = build_img2img_tab(context)
            with _tab(texts, "tabs.controlnet", "controlnet"):
                controlnet = build_controlnet_tab(context)
            with _tab(texts, "tabs.lora", "lora"):
                lora = build_lora_tab(service, texts)
            with _tab(texts, "tabs.models", "models"):
                models = build_models_tab(service, texts, model, _model_choices(service),
                                          current_source, access)
            with _tab(texts, "tabs.pnginfo", "pnginfo"):
                pnginfo = build_pnginfo_tab(texts)
            with _tab(texts, "tabs.settings", "settings") as settings_tab:
                settings = build_settings_tab(texts, preferences, access, options.outputs_base,
                                              service)
                device = build_device_section(texts, service, device_banner)
        wire_device_refresh(settings_tab, device, settings.language)
        panels = (txt2img.panel, img2img.panel, controlnet.panel)
        sizes = SizeSliders(tuple((panel.parameters.width, panel.parameters.height)
                                  for panel in panels))
        _wire_model_switch(service, texts, runner, model, sizes, offer, current_source, access)
        gallery = txt2img.panel.results.gallery
        _wire_send_image(gallery, txt2img.send.to_img2img, img2img.inputs.init_image, tabs,
                         "img2img")
        _wire_send_image(gallery, txt2img.send.to_controlnet, controlnet.control.image, tabs,
                         "controlnet")
        wire_lora_apply(lora, txt2img.panel.prompts.prompt, tabs, "txt2img")
        wire_send_parameters(pnginfo.send_to_txt2img, pnginfo.parsed, txt2img.panel.prompts,
                             txt2img.panel.parameters, tabs, "txt2img")
        wire_send_parameters(pnginfo.send_to_img2img, pnginfo.parsed, img2img.panel.prompts,
                             img2img.panel.parameters, tabs, "img2img")
        wire_settings(settings, texts, service, store, access, options.outputs_base,
                      options.allow_private_endpoint)
        samplers = [settings.default_sampler, *(panel.parameters.sampler for panel in panels)]
        view = SessionView(settings, [*settings.server_widgets(), *models.admin_widgets(),
                                      offer.accept], samplers, device)
        wire_session_view(demo, texts, store, access, view)
    return demo

