"""Prompt encoding that neither truncates nor assumes CLIP's tokenizer.

PAI's models pair a BERT tokenizer ([CLS]/[SEP], no bos/eos) with a CLIP text encoder and a
32-token context. A longer prompt is cut into chunks of the model's own context length, each
encoded separately and concatenated along the sequence, as AUTOMATIC1111 does for CLIP.
Weights from ``(word:1.3)`` scale each token's embedding, then the mean is restored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.prompt_syntax import BREAK_TEXT, ParsedPrompt
from engine.requests import PromptInfo

# Split a chunk after one of these if it lies close to the end, so phrases stay whole.
_PHRASE_ENDS = frozenset(",，、。;；")
_PHRASE_LOOKBACK = 8
# tokenizers report a huge sentinel when no length is configured.
_NO_LENGTH_SENTINEL = 10**9


@dataclass(frozen=True)
class TextContext:
    """How one model's text side frames a chunk: [start] body... [end] [pad]..."""

    length: int
    start_id: int
    end_id: int
    pad_id: int
    phrase_end_ids: frozenset[int]
    use_attention_mask: bool

    @property
    def body_length(self) -> int:
        return self.length - 2


def _first_id(*candidates: int | None) -> int:
    return next(c for c in candidates if c is not None)


def read_text_context(tokenizer, text_encoder) -> TextContext:
    """Read the context from the model; never assume 77."""
    lengths = [getattr(text_encoder.config, "max_position_embeddings", None),
               getattr(tokenizer, "model_max_length", None)]
    length = min(n for n in lengths if n and n < _NO_LENGTH_SENTINEL)
    start = _first_id(tokenizer.cls_token_id, tokenizer.bos_token_id)
    end = _first_id(tokenizer.sep_token_id, tokenizer.eos_token_id)
    pad = _first_id(tokenizer.pad_token_id, end)
    vocab = tokenizer.get_vocab()
    phrase_ids = frozenset(vocab[t] for t in _PHRASE_ENDS if t in vocab)
    return TextContext(length, start, end, pad, phrase_ids,
                       bool(getattr(text_encoder.config, "use_attention_mask", False)))


def _weighted_tokens(parsed: ParsedPrompt, tokenizer) -> list[tuple[int, float] | None]:
    """Token ids with their weights; None where BREAK forces a new chunk."""
    tokens: list[tuple[int, float] | None] = []
    for fragment in parsed.fragments:
        if fragment.text == BREAK_TEXT and fragment.weight == -1:
            tokens.append(None)
            continue
        ids = tokenizer(fragment.text, add_special_tokens=False, verbose=False)["input_ids"]
        tokens.extend((token_id, fragment.weight) for token_id in ids)
    return tokens


def _split_point(body: list[tuple[int, float]], context: TextContext) -> int:
    for back in range(1, min(_PHRASE_LOOKBACK, len(body)) + 1):
        if body[-back][0] in context.phrase_end_ids:
            return len(body) - back + 1
    return len(body)


def split_into_chunks(tokens: list[tuple[int, float] | None],
                      context: TextContext) -> list[list[tuple[int, float]]]:
    """Chunks of at most ``body_length`` tokens; a full chunk ends at a phrase end if near."""
    chunks: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for token in tokens:
        if token is None:
            chunks.append(current)
            current = []
            continue
        current.append(token)
        if len(current) == context.body_length:
            cut = _split_point(current, context)
            chunks.append(current[:cut])
            current = current[cut:]
    if current or not chunks:
        chunks.append(current)
    return chunks


def _frame(chunk: list[tuple[int, float]], context: TextContext) -> tuple[list[int], list[float]]:
    padding = context.length - len(chunk) - 2
    ids = [context.start_id, *(t for t, _ in chunk), context.end_id] + [context.pad_id] * padding
    weights = [1.0, *(w for _, w in chunk), 1.0] + [1.0] * padding
    return ids, weights


@torch.no_grad()
def _encode_chunk(chunk, context: TextContext, text_encoder, device) -> torch.Tensor:
    ids, weights = _frame(chunk, context)
    input_ids = torch.tensor([ids], device=device)
    mask = (input_ids != context.pad_id).long() if context.use_attention_mask else None
    hidden = text_encoder(input_ids, attention_mask=mask)[0]
    if all(w == 1.0 for w in weights):
        return hidden
    scale = torch.tensor(weights, device=device, dtype=hidden.dtype)[None, :, None]
    original_mean = hidden.float().mean()
    weighted = hidden * scale
    return weighted * (original_mean / weighted.float().mean()).to(hidden.dtype)


@dataclass(frozen=True)
class EncodedPrompts:
    positive: torch.Tensor
    negative: torch.Tensor
    positive_info: PromptInfo
    negative_info: PromptInfo


def prompt_info(parsed: ParsedPrompt, tokenizer, context: TextContext) -> PromptInfo:
    tokens = _weighted_tokens(parsed, tokenizer)
    chunks = split_into_chunks(tokens, context)
    return PromptInfo(sum(t is not None for t in tokens), context.length, len(chunks))


def encode_prompts(positive: ParsedPrompt, negative: ParsedPrompt, tokenizer, text_encoder,
                   context: TextContext, device) -> EncodedPrompts:
    """Both prompts padded to the same number of chunks, as classifier-free guidance needs."""
    chunk_lists = []
    for parsed in (positive, negative):
        chunk_lists.append(split_into_chunks(_weighted_tokens(parsed, tokenizer), context))
    count = max(len(chunks) for chunks in chunk_lists)
    encoded = []
    for chunks in chunk_lists:
        padded = chunks + [[] for _ in range(count - len(chunks))]
        encoded.append(torch.cat(
            [_encode_chunk(c, context, text_encoder, device) for c in padded], dim=1))
    infos = [PromptInfo(sum(len(c) for c in chunks), context.length, len(chunks))
             for chunks in chunk_lists]
    return EncodedPrompts(encoded[0], encoded[1], infos[0], infos[1])
