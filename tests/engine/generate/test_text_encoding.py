"""Prompt encoding: the model's own context, chunks instead of truncation, BERT and CLIP."""

from __future__ import annotations

import json

import pytest
import torch

from engine.generate.text_encoding import encode_prompts, read_text_context, split_into_chunks
from engine.prompt_syntax import parse_prompt


@pytest.fixture(scope="module")
def pai(engine):
    base = engine.pipelines.base("pai-artist-large")
    return base.pipe, base.text_context


def _encode(pipe, context, prompt, negative=""):
    return encode_prompts(parse_prompt(prompt), parse_prompt(negative), pipe.tokenizer,
                          pipe.text_encoder, context, "cpu")


def test_short_prompt_matches_diffusers_own_encoding(pai):
    pipe, context = pai
    ours = _encode(pipe, context, "亭台楼阁，曲径通幽", "油画")
    theirs, theirs_negative = pipe.encode_prompt("亭台楼阁，曲径通幽", "cpu", 1, True, "油画")
    assert torch.allclose(ours.positive, theirs, atol=1e-6)
    assert torch.allclose(ours.negative, theirs_negative, atol=1e-6)


def test_long_prompt_is_several_chunks_each_framed(pai):
    pipe, context = pai
    prompt = "山" * 70
    encoded = _encode(pipe, context, prompt)
    assert encoded.positive.shape[1] == 3 * 32
    assert encoded.negative.shape == encoded.positive.shape  # padded to the same chunk count
    assert (encoded.positive_info.tokens, encoded.positive_info.chunks) == (70, 3)
    second_chunk, _ = pipe.encode_prompt("山" * 30, "cpu", 1, False)
    assert torch.allclose(encoded.positive[:, 32:64], second_chunk, atol=1e-6)


def test_chunks_break_after_a_phrase_end_when_near():
    tokens = [(i, 1.0) for i in range(25)] + [(999, 1.0)] + [(i, 1.0) for i in range(10)]
    context = type("Context", (), {"body_length": 30, "phrase_end_ids": frozenset({999})})()
    chunks = split_into_chunks(tokens, context)
    assert [len(c) for c in chunks] == [26, 10]
    assert chunks[0][-1][0] == 999


def test_break_starts_a_new_chunk(pai):
    pipe, context = pai
    encoded = _encode(pipe, context, "雪山 BREAK 湖泊")
    assert encoded.positive_info.chunks == 2 and encoded.positive.shape[1] == 64


def test_weights_scale_tokens_and_keep_the_mean(pai):
    pipe, context = pai
    plain = _encode(pipe, context, "雪山湖泊").positive
    weighted = _encode(pipe, context, "(雪山:1.5)湖泊").positive
    assert not torch.allclose(plain, weighted)
    assert weighted.mean().item() == pytest.approx(plain.mean().item(), rel=1e-4)


def test_empty_prompts_encode_as_one_chunk(pai):
    pipe, context = pai
    encoded = _encode(pipe, context, "")
    assert encoded.positive.shape[1] == 32 and encoded.positive_info.tokens == 0


def _tiny_clip(tmp_path):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    characters = list(bytes_to_unicode().values())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for character in characters:
        vocab.setdefault(character, len(vocab))
        vocab.setdefault(character + "</w>", len(vocab))
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"),
                              model_max_length=77)
    encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1))
    return tokenizer, encoder


def test_clip_tokenizer_context_is_77_with_bos_and_eos(tmp_path):
    tokenizer, encoder = _tiny_clip(tmp_path)
    context = read_text_context(tokenizer, encoder)
    assert (context.length, context.start_id, context.end_id) == (77, 0, 1)
    encoded = encode_prompts(parse_prompt("a photo " * 20), parse_prompt(""), tokenizer, encoder,
                             context, "cpu")
    assert encoded.positive_info.tokens == 120  # "a" + "photo" in letters, 20 times
    assert encoded.positive.shape[1] == 2 * 77  # 75 tokens per chunk
