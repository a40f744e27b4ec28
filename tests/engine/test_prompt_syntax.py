"""Tests for engine.prompt_syntax: the A1111 prompt syntax parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.prompt_syntax import (
    BREAK_TEXT,
    LoraReference,
    ParsedPrompt,
    PromptFragment,
    parse_prompt,
)


def frags(text: str) -> list[tuple[str, float]]:
    return [(f.text, f.weight) for f in parse_prompt(text).fragments]


def assert_frags(text: str, expected: list[tuple[str, float]]) -> None:
    actual = frags(text)
    assert [t for t, _ in actual] == [t for t, _ in expected]
    assert [w for _, w in actual] == pytest.approx([w for _, w in expected])


BRK = (BREAK_TEXT, -1.0)


# --- weights ---------------------------------------------------------------


def test_explicit_weight_exact_output():
    assert parse_prompt("a (b:1.5) c") == ParsedPrompt(
        fragments=(PromptFragment("a ", 1.0), PromptFragment("b", 1.5), PromptFragment(" c", 1.0)),
        loras=(),
    )


def test_plain_text_is_one_fragment():
    assert frags("a cat on a mat") == [("a cat on a mat", 1.0)]


@pytest.mark.parametrize(
    "text, weight",
    [("(x)", 1.1), ("((x))", 1.21), ("(((x)))", 1.331), ("[x]", 1 / 1.1), ("[[x]]", 1 / 1.21),
     ("([x])", 1.0)],
)
def test_round_and_square_brackets(text, weight):
    assert_frags(text, [("x", weight)])


@pytest.mark.parametrize(
    "text, weight",
    [
        ("(x:1.3)", 1.3),
        ("(x:1)", 1.0),
        ("(x:2)", 2.0),
        ("(x:1.)", 1.0),
        ("(x:.5)", 0.5),
        ("(x:-0.5)", -0.5),
        ("(x:+0.5)", 0.5),
        ("(x: 1.3 )", 1.3),
        ("(x:0)", 0.0),
    ],
)
def test_explicit_weight_numbers(text, weight):
    assert_frags(text, [("x", weight)])


def test_nested_weights_multiply():
    assert_frags("((x:1.5))", [("x", 1.65)])
    assert_frags("[(x:2)]", [("x", 2 / 1.1)])
    assert_frags("(a (b:2) c:1.5)", [("a ", 1.5), ("b", 3.0), (" c", 1.5)])
    assert_frags("(a [b] c)", [("a ", 1.1), ("b", 1.0), (" c", 1.1)])


def test_colon_without_number_is_text():
    assert_frags("(a:b)", [("a:b", 1.1)])
    assert_frags("(a:b:1.2)", [("a:b", 1.2)])
    assert_frags("a:b", [("a:b", 1.0)])


def test_malformed_numbers_are_text():
    assert_frags("(x:1.2.3)", [("x:1.2.3", 1.1)])
    assert_frags("(x:.)", [("x:.", 1.1)])
    assert_frags("(x:1e3)", [("x:1e3", 1.1)])


def test_square_bracket_weight_is_not_syntax():
    assert_frags("[x:1.5]", [("x:1.5", 1 / 1.1)])


def test_interleaved_bracket_kinds():
    # A1111 pairs ( with ) and [ with ] on separate stacks, so these ranges overlap.
    assert_frags("(a[b)c]d", [("a", 1.1), ("b", 1.0), ("c", 1 / 1.1), ("d", 1.0)])


# --- escapes ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text, literal",
    [(r"\(x\)", "(x)"), (r"\[x\]", "[x]"), (r"a\\b", "a\\b"), (r"\(x:1.5\)", "(x:1.5)")],
)
def test_escapes_give_literals(text, literal):
    assert frags(text) == [(literal, 1.0)]


def test_escape_inside_weighted_group():
    assert_frags(r"(smile \(face\):1.2)", [("smile (face)", 1.2)])


def test_escaped_backslash_does_not_escape_bracket():
    assert_frags("\\\\(x)", [("\\", 1.0), ("x", 1.1)])


def test_lone_backslash_is_kept():
    assert frags(r"a\b") == [("a\\b", 1.0)]


# --- unbalanced brackets ---------------------------------------------------


def test_unclosed_round_applies_to_rest():
    assert_frags("a (b c", [("a ", 1.0), ("b c", 1.1)])
    assert_frags("a ((b", [("a ", 1.0), ("b", 1.21)])


def test_unclosed_square_applies_to_rest():
    assert_frags("a [b", [("a ", 1.0), ("b", 1 / 1.1)])


def test_unclosed_outer_with_closed_inner():
    assert_frags("(a (b) c", [("a ", 1.1), ("b", 1.21), (" c", 1.1)])


@pytest.mark.parametrize("text", ["a)b", "a]b", ")", "]", "a:1.5)b", "))]]"])
def test_stray_closers_are_literal(text):
    assert frags(text) == [(text, 1.0)]


def test_mismatched_closer_is_literal():
    assert_frags("(a]b)", [("a]b", 1.1)])


def test_empty_brackets_produce_nothing():
    assert frags("()[]") == []
    assert frags("a()b") == [("ab", 1.0)]


# --- BREAK -----------------------------------------------------------------


def test_break_marker():
    assert frags("a BREAK b") == [("a", 1.0), BRK, ("b", 1.0)]


def test_break_at_boundaries_and_repeated():
    assert frags("BREAK") == [BRK]
    assert frags("BREAK a") == [BRK, ("a", 1.0)]
    assert frags("a BREAK BREAK b") == [("a", 1.0), BRK, BRK, ("b", 1.0)]
    assert frags("a\nBREAK\tb") == [("a", 1.0), BRK, ("b", 1.0)]


@pytest.mark.parametrize("text", ["aBREAK b", "a BREAKb", "a break b", "a Break b", "BREAKS",
                                  "a,BREAK b"])
def test_break_must_be_standalone_uppercase_word(text):
    assert frags(text) == [(text, 1.0)]


def test_break_inside_brackets_keeps_marker_weight():
    assert_frags("(a BREAK b)", [("a", 1.1), BRK, ("b", 1.1)])


def test_break_not_in_plain_text():
    assert parse_prompt("a BREAK b").plain_text == "ab"


# --- LoRA ------------------------------------------------------------------


def test_lora_with_weight():
    result = parse_prompt("a cat <lora:catStyle:0.8> on a mat")
    assert result.loras == (LoraReference("catStyle", 0.8),)
    assert frags("a cat <lora:catStyle:0.8> on a mat") == [("a cat  on a mat", 1.0)]


def test_lora_default_weight_and_order():
    result = parse_prompt("<lora:b> x <lyco:a:-0.5> <lora:c: 1.2 >")
    assert result.loras == (LoraReference("b", 1.0), LoraReference("a", -0.5),
                            LoraReference("c", 1.2))
    assert result.plain_text == " x  "


@pytest.mark.parametrize("name", ["诗意", "my lora", "style.v2", "anime-line", "sub/dir/name",
                                  "水墨 v1.5-final"])
def test_lora_names(name):
    assert parse_prompt(f"x <lora:{name}:0.7>").loras == (LoraReference(name, 0.7),)


@pytest.mark.parametrize("text", ["<lora:x:abc>", "<lora::0.5>", "<lora:x:>", "<lora:x",
                                  "<lora:x:0.5:0.3>", "<lola:x>"])
def test_malformed_lora_left_as_text(text):
    result = parse_prompt(text)
    assert result.loras == ()
    assert result.plain_text == text


def test_lora_inside_brackets():
    result = parse_prompt("(a <lora:x:0.5> b:1.2)")
    assert result.loras == (LoraReference("x", 0.5),)
    assert_frags("(a <lora:x:0.5> b:1.2)", [("a  b", 1.2)])


def test_lora_name_brackets_are_not_syntax():
    result = parse_prompt("<lora:foo(v2)[x]:0.5> y")
    assert result.loras == (LoraReference("foo(v2)[x]", 0.5),)
    assert frags("<lora:foo(v2)[x]:0.5> y") == [(" y", 1.0)]


# --- Chinese ---------------------------------------------------------------


def test_chinese_prompt_with_lora():
    result = parse_prompt("亭台楼阁，(水墨绘画:1.3)，中国风 <lora:诗意:0.4>")
    assert result.fragments == (
        PromptFragment("亭台楼阁，", 1.0),
        PromptFragment("水墨绘画", 1.3),
        PromptFragment("，中国风 ", 1.0),
    )
    assert result.loras == (LoraReference("诗意", 0.4),)
    assert result.plain_text == "亭台楼阁，水墨绘画，中国风 "


def test_full_width_punctuation_is_not_syntax():
    text = "山水（水墨：1.5）【古风】，细节"
    assert frags(text) == [(text, 1.0)]


def test_chinese_nested_emphasis():
    assert_frags("((仙鹤)) 飞过 [云海]", [("仙鹤", 1.21), (" 飞过 ", 1.0), ("云海", 1 / 1.1)])


# --- merging and empties ---------------------------------------------------


def test_empty_prompt():
    assert parse_prompt("") == ParsedPrompt(fragments=(), loras=())
    assert parse_prompt("").plain_text == ""


def test_adjacent_equal_weights_merge():
    assert_frags("(a)(b)", [("ab", 1.1)])
    assert_frags("a(b:1)c", [("abc", 1.0)])


def test_lora_only_prompt_has_its_lora_and_no_fragments():
    assert parse_prompt("<lora:x:0.5>") == ParsedPrompt(fragments=(),
                                                        loras=(LoraReference("x", 0.5),))


def test_dataclasses_are_frozen():
    with pytest.raises(AttributeError):
        PromptFragment("a", 1.0).text = "b"  # type: ignore[misc]


# --- performance -----------------------------------------------------------


@pytest.mark.parametrize(
    "text, plain, breaks",
    [
        ("(" * 100_000, "", 0),  # openers alone: no text to weigh
        ("(a" * 50_000, "a" * 50_000, 0),
        ("[a" * 50_000, "a" * 50_000, 0),
        (" " * 100_000, " " * 100_000, 0),
        (":" + "1" * 100_000, ":" + "1" * 100_000, 0),
        ("(a:" + "1" * 100_000, "a:" + "1" * 100_000, 0),  # no ")": the colon is text
        ("<lora:" + "a" * 100_000, "<lora:" + "a" * 100_000, 0),
        ("<lora:a:" + "1" * 100_000, "<lora:a:" + "1" * 100_000, 0),
        (" BREAK" * 20_000, "", 20_000),  # markers only, their spaces stripped
        ("\\" * 100_000, "\\" * 50_000, 0),  # each pair is one escaped backslash
        ("a)" * 50_000, "a)" * 50_000, 0),
        ("(a)" * 33_000, "a" * 33_000, 0),
        ("水墨" * 50_000, "水墨" * 50_000, 0),
    ],
)
def test_large_inputs_parse_without_losing_text(text, plain, breaks):
    parsed = parse_prompt(text)
    assert parsed.plain_text == plain
    assert sum((f.text, f.weight) == BRK for f in parsed.fragments) == breaks
    assert all(f.text for f in parsed.fragments) and parsed.loras == ()


# --- properties ------------------------------------------------------------

SYNTAX_ALPHABET = st.sampled_from(list("()[]<>\\:., ab1.5-BREAKlorayc诗意（）：，\n"))
syntaxy_text = st.one_of(st.text(), st.text(SYNTAX_ALPHABET), st.lists(
    st.sampled_from(["(", ")", "[", "]", ":1.2)", ":", "\\", " BREAK ", "<lora:x:0.5>", "<lora:",
                     ">", "a", "诗"])
).map("".join))


@given(syntaxy_text)
@settings(max_examples=500)
def test_never_raises(text):
    result = parse_prompt(text)
    assert isinstance(result, ParsedPrompt)
    assert all(f.text for f in result.fragments)


@given(st.text().filter(lambda s: not any(c in s for c in "()[]<>\\") and "BREAK" not in s))
def test_syntax_free_text_is_unchanged(text):
    expected = (PromptFragment(text, 1.0),) if text else ()
    assert parse_prompt(text) == ParsedPrompt(fragments=expected, loras=())


@given(syntaxy_text)
def test_no_adjacent_mergeable_fragments(text):
    fragments = parse_prompt(text).fragments
    for left, right in zip(fragments, fragments[1:], strict=False):
        if BREAK_TEXT not in (left.text, right.text):
            assert left.weight != right.weight


@given(syntaxy_text)
def test_parser_never_invents_brackets(text):
    plain = parse_prompt(text).plain_text
    for ch in "()[]":
        assert plain.count(ch) <= text.count(ch)


lora_names = st.text(st.characters(blacklist_characters=":<>", blacklist_categories=("Cs",)),
                     min_size=1).filter(lambda s: s.strip() == s and s)
lora_weights = st.one_of(st.none(), st.floats(-2, 2, allow_nan=False).map(lambda w: round(w, 3)))
plain_pieces = st.text(st.characters(blacklist_characters="()[]<>\\", blacklist_categories=("Cs",)))


@given(st.lists(st.tuples(plain_pieces, lora_names, lora_weights)), plain_pieces)
def test_parsed_lora_tags_are_removed_from_plain_text(parts, tail):
    text = "".join(
        piece + (f"<lora:{name}>" if weight is None else f"<lora:{name}:{weight}>")
        for piece, name, weight in parts
    ) + tail
    result = parse_prompt(text)
    assert result.loras == tuple(LoraReference(n, 1.0 if w is None else w) for _, n, w in parts)
    assert "<lora:" not in result.plain_text
    source = "".join(piece for piece, _, _ in parts) + tail
    if "BREAK" not in source:  # BREAK would strip the whitespace around it
        assert result.plain_text == source
