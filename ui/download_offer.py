"""First use of a model that is not on disk yet: instead of only an error, the page offers to
download it (its name, size and the download source are shown), and after the user agrees it
downloads with progress, then switches to the model. Nothing is fetched without that click.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from engine.downloads.jobs import FINISHED, DownloadState
from engine.downloads.sources import DownloadSource
from engine.errors import EngineError
from engine.interfaces import ImageServiceLike
from engine.store.manifest import ModelKind
from ui.access import Access
from ui.job_runner import JobRunner
from ui.models_tab import download_text
from ui.size_sliders import SizeSliders
from ui.texts import Texts

POLL_SECONDS = 1.0


@dataclass(frozen=True)
class DownloadOffer:
    box: Any
    question: Any
    status: Any
    accept: Any
    decline: Any
    model: Any  # gr.State: the model the offer is about

    def shown_for(self, service: ImageServiceLike, texts: Texts, model_id: str,
                  source: DownloadSource) -> dict[Any, Any]:
        """Updates for the box, question, status and model that ask about ``model_id``."""
        entry = next((e for kind in ModelKind for e in service.entries(kind) if e.id == model_id),
                      None)
        name = entry.name.text(texts.language) if entry else model_id
        size = entry.size_text if entry else "?"
        question = texts("offer.question", name=name, size=size,
                         source=source.endpoint.split("://", 1)[-1])
        return {self.box: gr.Group(visible=True), self.question: question, self.status: "",
                self.model: model_id}

    def hidden(self) -> dict[Any, Any]:
        return {self.box: gr.Group(visible=False), self.question: gr.skip(), self.status: "",
                self.model: ""}

    def outputs(self) -> list[Any]:
        """What ``shown_for`` and ``hidden`` update."""
        return [self.box, self.question, self.status, self.model]


def build_download_offer(texts: Texts) -> DownloadOffer:
    with gr.Group(visible=False, elem_id="download-offer") as box:
        question = gr.Markdown("", elem_id="download-offer-question")
        with gr.Row():
            accept = texts.make(gr.Button, text="offer.accept", variant="primary",
                                elem_id="download-offer-accept")
            decline = texts.make(gr.Button, text="offer.decline",
                                 elem_id="download-offer-decline")
        status = gr.Markdown("", elem_id="download-offer-status")
    return DownloadOffer(box, question, status, accept, decline, gr.State(""))


def wire_download_offer(service: ImageServiceLike, texts: Texts, runner: JobRunner,
                        offer: DownloadOffer, picker: Any, size_sliders: SizeSliders,
                        current_source: Callable[[], DownloadSource], access: Access) -> None:
    def progress_shown(model_id: str) -> dict[Any, Any]:
        return {**size_sliders.unchanged(), offer.box: gr.skip(),
                offer.status: download_text(service, texts, model_id)}

    def fetch_then_switch(model_id: str, request: gr.Request) -> Iterator[dict[Any, Any]]:
        """Download (progress every second), then make it the current model. Admins only:
        the offer is shown to them alone, and a direct API call is checked here."""
        if not access.is_admin(request):
            raise texts.failure(texts.error("admin_only"))
        try:
            service.download(model_id, current_source())
        except EngineError as error:
            raise texts.engine_failure(error) from None
        status = service.download_status(model_id)
        while status is not None and status.state not in FINISHED:
            yield progress_shown(model_id)
            time.sleep(POLL_SECONDS)
            status = service.download_status(model_id)
        if status is not None and status.state is not DownloadState.DONE:
            yield progress_shown(model_id)
            return
        try:  # through the job queue, behind running jobs (they hold the engine's lock)
            runner.switch_model(model_id, request)
        except EngineError as error:
            raise texts.engine_failure(error) from None
        width, height = service.default_size(model_id)
        yield {**size_sliders.set_to(width, height), offer.box: gr.Group(visible=False),
               offer.status: ""}

    # Waits on its download for minutes: one user's must not hold up another's.
    offer.accept.click(fetch_then_switch, inputs=offer.model,
                       outputs=[*size_sliders.components(), offer.box, offer.status],
                       concurrency_limit=None, api_name="accept_download")
    # Declining puts the picker back on the model in use.
    offer.decline.click(lambda: {offer.box: gr.Group(visible=False),
                                 picker: service.active_model},
                        outputs=[offer.box, picker], queue=False, api_name="decline_download")
