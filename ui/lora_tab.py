"""LoRA 风格: style cards to tick, each with its weight; applied as ``<lora:name:w>`` tags in the
文生图 prompt, where users can see and edit them (typing tags works just as well).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr

from engine.interfaces import ImageServiceLike
from engine.prompt_syntax import remove_lora_tags
from engine.store.catalog import LoraChoice
from ui.texts import Texts


@dataclass(frozen=True)
class LoraCard:
    choice: LoraChoice
    enabled: Any
    weight: Any


@dataclass(frozen=True)
class LoraTab:
    cards: list[LoraCard]
    apply: Any


def apply_styles(prompt: str, styles: list[tuple[LoraChoice, float]],
                 known: set[str]) -> str:
    """The prompt with tags of the known styles replaced by the chosen ones (others kept).

    A tag is what the engine reads as one (``engine.prompt_syntax.LORA_TAG``): a style the
    engine would apply is never left behind.
    """
    text = remove_lora_tags(prompt or "", known).strip()
    for choice, _ in styles:
        for word in choice.trigger_words:
            if word not in text:
                text = f"{text}，{word}" if text else word
    tags = " ".join(f"<lora:{choice.name}:{weight:g}>" for choice, weight in styles)
    return f"{text} {tags}".strip()


def _card_text(choice: LoraChoice, language: str) -> str:
    from locales import translate

    title = choice.title_zh if language == "zh-CN" else choice.title_en
    description = choice.description_zh if language == "zh-CN" else choice.description_en
    lines = [f"### {title}", description]
    if choice.base:
        lines.append(translate(language, "lora.for_base", base=choice.base))
    if choice.trigger_words:
        lines.append(translate(language, "lora.trigger_words",
                               words="、".join(choice.trigger_words)))
    return "\n\n".join(line for line in lines if line)


def build_lora_tab(service: ImageServiceLike, texts: Texts) -> LoraTab:
    limits = service.limits
    texts.make(gr.Markdown, text="lora.intro")
    cards = []
    with gr.Row(equal_height=True, elem_id="lora-cards"):
        for index, choice in enumerate(service.lora_choices()):
            with gr.Column(min_width=220, variant="panel", elem_classes=["lora-card"]):
                if choice.has_preview:
                    # Read on every page load: the picture may arrive after start-up.
                    gr.Image(value=lambda name=choice.name: service.lora_preview(name),
                             interactive=False, show_label=False, height=160, buttons=[],
                             elem_classes=["lora-preview"], elem_id=f"lora-preview-{index}")
                card_text = gr.Markdown(_card_text(choice, texts.language))
                texts.bind(card_text, value=partial(_card_text, choice))
                enabled = texts.make(gr.Checkbox, label="lora.enable", value=False,
                                     elem_id=f"lora-enable-{index}")
                weight = texts.make(gr.Slider, label="lora.weight",
                                    minimum=limits.min_lora_weight,
                                    maximum=limits.max_lora_weight, step=0.05,
                                    value=choice.weight, elem_id=f"lora-weight-{index}")
            cards.append(LoraCard(choice, enabled, weight))
    if not cards:
        texts.make(gr.Markdown, text="lora.none")
    apply = texts.make(gr.Button, text="lora.apply", variant="primary", elem_id="lora-apply")
    return LoraTab(cards, apply)


def wire_lora_apply(tab: LoraTab, prompt: Any, tabs: Any, target_tab: str) -> None:
    known = {card.choice.name for card in tab.cards}

    def apply(values: dict):
        styles = [(card.choice, float(values[card.weight])) for card in tab.cards
                  if values[card.enabled]]
        return {prompt: apply_styles(values[prompt], styles, known),
                tabs: gr.Tabs(selected=target_tab)}

    inputs = {prompt, *(card.enabled for card in tab.cards), *(card.weight for card in tab.cards)}
    tab.apply.click(apply, inputs=inputs, outputs=[prompt, tabs], queue=False)
