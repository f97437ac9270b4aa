"""The thinking parser, each format: delimiters split anywhere across stream pieces, a reply that
never closes its thinking, a closing delimiter with no opening (the prompt opened it), thinking off."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assistant.engine import thinking
from assistant.engine.thinking import ANSWER, THINKING, ThinkingParser, close_block, detect_format, opens_thinking

# Each format's reply with thinking and an answer, as the model writes it (markers as text: the runner
# renders the special tokens), with the generation prompt it follows.
REPLIES = {
    "think_tags": ("<|im_start|>assistant\n", "<think>\nLet me see: 2+2.\n</think>\n\nIt is 4."),
    "gemma4_channel": ("<|turn>model\n", "<|channel>thought\nLet me see: 2+2.<channel|>It is 4."),
    "harmony": ("<|start|>user<|message|>2+2?<|end|><|start|>assistant",
                "<|channel|>analysis<|message|>Let me see: 2+2.<|end|>"
                "<|start|>assistant<|channel|>final<|message|>It is 4."),
    "mistral_think": ("[INST]2+2?[/INST]", "[THINK]Let me see: 2+2.[/THINK]It is 4."),
}


def parse(fmt, prompt, parts):
    parser = ThinkingParser.for_prompt(fmt, prompt)
    pieces = []
    for part in parts:
        pieces += parser.feed(part)
    pieces += parser.finish()
    return parser, pieces


def joined(pieces, kind):
    return "".join(p.text for p in pieces if p.kind == kind)


def splits(text, cuts):
    cuts = sorted(set(c for c in cuts if 0 < c < len(text)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


@pytest.mark.parametrize("fmt", list(REPLIES))
def test_whole_reply_is_told_apart(fmt):
    prompt, reply = REPLIES[fmt]
    parser, pieces = parse(fmt, prompt, [reply])
    assert joined(pieces, THINKING) == "Let me see: 2+2." and joined(pieces, ANSWER) == "It is 4."
    assert parser.thinking == "Let me see: 2+2." and parser.answer == "It is 4." and not parser.unfinished


@pytest.mark.parametrize("fmt", list(REPLIES))
def test_every_split_into_two_and_three_pieces(fmt):
    """Exhaustive: every place one cut can fall, and every pair of cuts around each delimiter."""
    prompt, reply = REPLIES[fmt]
    for i in range(len(reply) + 1):
        _, pieces = parse(fmt, prompt, splits(reply, [i]))
        assert (joined(pieces, THINKING), joined(pieces, ANSWER)) == ("Let me see: 2+2.", "It is 4."), i
    for i in range(len(reply)):
        for j in range(i + 1, min(len(reply), i + 24)):
            _, pieces = parse(fmt, prompt, splits(reply, [i, j]))
            assert (joined(pieces, THINKING), joined(pieces, ANSWER)) == ("Let me see: 2+2.", "It is 4."), (i, j)


@settings(max_examples=300, deadline=None)
@given(fmt=st.sampled_from(list(REPLIES)), cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=40))
def test_any_split_into_any_number_of_pieces(fmt, cuts):
    prompt, reply = REPLIES[fmt]
    _, pieces = parse(fmt, prompt, splits(reply, cuts))
    assert joined(pieces, THINKING) == "Let me see: 2+2." and joined(pieces, ANSWER) == "It is 4."
    assert all(p.text for p in pieces)
    for marker in thinking.MARKERS[fmt]:  # no delimiter is ever shown
        assert marker not in joined(pieces, ANSWER) and marker not in joined(pieces, THINKING)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("ab <>/[]|thinkTHINKchanelmsg\n")), max_size=60),
       cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=12),
       fmt=st.sampled_from([*REPLIES, "auto", None]))
def test_splitting_never_changes_the_result(text, cuts, fmt):
    """Whatever the text, pieces give what the whole gives: nothing held back is lost or doubled."""
    whole = parse(fmt, "", [text])[1]
    split = parse(fmt, "", splits(text, cuts))[1]
    assert joined(split, THINKING) == joined(whole, THINKING)
    assert joined(split, ANSWER) == joined(whole, ANSWER)


@pytest.mark.parametrize("fmt", list(REPLIES))
def test_a_reply_that_never_closes_its_thinking(fmt):
    prompt, reply = REPLIES[fmt]
    cut = reply.index("2+2.") + len("2+2.")
    parser, pieces = parse(fmt, prompt, [reply[:cut]])
    assert joined(pieces, THINKING) == "Let me see: 2+2." and joined(pieces, ANSWER) == ""
    assert parser.unfinished and parser.state == THINKING


PROMPT_OPENED = {
    "think_tags": ("<|im_start|>assistant\n<think>\n", "Let me see: 2+2.\n</think>\n\nIt is 4."),
    "gemma4_channel": ("<|turn>model\n<|channel>thought\n", "Let me see: 2+2.<channel|>It is 4."),
    "harmony": ("<|start|>assistant<|channel|>analysis<|message|>",
                "Let me see: 2+2.<|end|><|start|>assistant<|channel|>final<|message|>It is 4."),
    "mistral_think": ("[INST]2+2?[/INST][THINK]", "Let me see: 2+2.[/THINK]It is 4."),
}


@pytest.mark.parametrize("fmt", list(PROMPT_OPENED))
def test_a_closing_delimiter_without_an_opening_when_the_prompt_opened_it(fmt):
    prompt, reply = PROMPT_OPENED[fmt]
    assert opens_thinking(fmt, prompt)
    for i in range(len(reply) + 1):
        _, pieces = parse(fmt, prompt, splits(reply, [i]))
        assert joined(pieces, THINKING) == "Let me see: 2+2." and joined(pieces, ANSWER) == "It is 4.", i


def test_qwen35s_real_generation_prompt_opens_the_thinking():
    from pathlib import Path

    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = (Path(__file__).parent / "data" / "templates" / "Qwen3.5-4B.jinja").read_text()
    fmt = Jinja2ChatFormatter(template=template, eos_token="<|im_end|>", bos_token="")
    on = fmt(messages=[{"role": "user", "content": "hi"}]).prompt
    off = fmt(messages=[{"role": "user", "content": "hi"}], enable_thinking=False).prompt
    assert detect_format(template) == "think_tags"
    assert opens_thinking("think_tags", on) and not opens_thinking("think_tags", off)


OFF = {  # thinking switched off: the model writes an empty block, or the prompt closed it
    "think_tags": ("<|im_start|>assistant\n", "<think>\n\n</think>\n\nIt is 4."),
    "gemma4_channel": ("<|turn>model\n<|channel>thought\n<channel|>", "It is 4."),
    "harmony": ("<|start|>assistant", "<|channel|>analysis<|message|><|end|><|start|>assistant<|channel|>final"
                                      "<|message|>It is 4."),
    "mistral_think": ("[INST]2+2?[/INST]", "[THINK][/THINK]It is 4."),
}


@pytest.mark.parametrize("fmt", list(OFF))
def test_thinking_off_gives_an_empty_block_and_the_whole_answer(fmt):
    prompt, reply = OFF[fmt]
    for i in range(len(reply) + 1):
        parser, pieces = parse(fmt, prompt, splits(reply, [i]))
        assert joined(pieces, THINKING) == "" and joined(pieces, ANSWER) == "It is 4.", i
        assert parser.thinking == "" and not parser.unfinished


@pytest.mark.parametrize("fmt", list(REPLIES))
def test_close_block_leaves_the_prompt_ready_to_answer(fmt):
    prompt, _ = REPLIES[fmt]
    opened, _ = PROMPT_OPENED[fmt]
    for p in (prompt, opened):
        closed = p + close_block(fmt, p)
        assert not opens_thinking(fmt, closed)
        _, pieces = parse(fmt, closed, ["It is 4."])
        assert joined(pieces, ANSWER) == "It is 4." and joined(pieces, THINKING) == ""


def test_no_format_and_none_show_everything_as_the_answer():
    for fmt in (None, thinking.NONE, "not-a-format"):
        _, pieces = parse(fmt, "", ["<think>x</think>y"])
        assert joined(pieces, ANSWER) == "<think>x</think>y"


def test_an_answer_that_writes_a_tag_keeps_it():
    _, pieces = parse("think_tags", "", ["Use the <think> tag like this."])
    assert joined(pieces, ANSWER) == "Use the <think> tag like this."


def test_harmony_with_no_header_is_an_answer():
    _, pieces = parse("harmony", "<|start|>assistant", ["Plain text from a model that ignores Harmony."])
    assert joined(pieces, ANSWER) == "Plain text from a model that ignores Harmony."


def test_phase_counts_delimiters_with_the_thinking():
    """A token counts as thinking when the phase before or after it is thinking; a token whose text the
    parser holds (the start of a delimiter) waits and goes with the token that decides it."""
    parser = ThinkingParser.for_prompt("gemma4_channel", "<|turn>model\n")
    thinking_tokens = waiting = 0
    for token in ["<|channel>", "thought", "\nhm", "<channel|>", "Hi", " there"]:
        before = parser.phase
        pieces = parser.feed(token)
        if parser.holding and before == parser.phase and not pieces:
            waiting += 1
            continue
        if THINKING in (before, parser.phase):
            thinking_tokens += 1 + waiting
        waiting = 0
    assert thinking_tokens == 4


@pytest.mark.parametrize("template, arch, expected", [
    ("{{ '<|im_start|>assistant\\n<think>\\n' }}", "qwen35", "think_tags"),
    ("{{ '<|turn>model\\n<|channel>thought\\n<channel|>' }}", "gemma4", "gemma4_channel"),
    ("<|start|>assistant<|channel|>final<|message|>", "gpt-oss", "harmony"),
    ("[SYSTEM_PROMPT]x[/SYSTEM_PROMPT][THINK]", "mistral3", "mistral_think"),
    ("{{ messages }}", "gpt-oss", "harmony"),
    ("{{ messages }}", "llama", None),
    (None, "gemma4", "gemma4_channel"),
])
def test_detect_format_from_template_and_architecture(template, arch, expected):
    assert detect_format(template, arch) == expected


def test_the_catalogue_decides_for_a_known_family():
    assert detect_format("{{ messages }}", "llama", catalogue="think_tags") == "think_tags"
    assert detect_format("<think>", "llama", catalogue=None) == "think_tags"


def test_reply_opening_is_where_the_generation_prompts_markup_begins():
    from assistant.engine.thinking import reply_opening

    on = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n"
    off = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert on[reply_opening("think_tags", on):] == "<think>\n"
    assert off[reply_opening("think_tags", off):] == "<think>\n\n</think>\n\n"
    gemma = "<|turn>user\nhi<turn|>\n<|turn>model\n<|channel>thought\n<channel|>"
    assert gemma[reply_opening("gemma4_channel", gemma):] == "<|channel>thought\n<channel|>"
    harmony = ("<|start|>user<|message|>hi<|end|><|start|>assistant<|channel|>analysis<|message|><|end|>"
               "<|start|>assistant<|channel|>final<|message|>")  # thinking off: an empty analysis, then final
    assert harmony[reply_opening("harmony", harmony):].startswith("<|channel|>analysis")
    assert reply_opening("think_tags", "<|im_start|>assistant\n") is None  # the model opens it itself
    assert reply_opening("harmony", "<|start|>assistant") is None
    assert reply_opening(None, on) is None
    # An old <think> far back in the conversation is not the generation prompt's.
    assert reply_opening("think_tags", "<think>x</think>" + "y" * 500 + "<|im_start|>assistant\n") is None


def test_every_catalogue_format_is_one_the_parser_reads():
    from types import SimpleNamespace

    from assistant.engine.local import _catalogue_thinking
    from models import catalogue

    formats = {e.thinking for e in catalogue.entries() if e.thinking}
    assert formats and formats <= set(thinking.FORMATS)
    # The runner is told the catalogue's word for an installed catalogue model (plan_load's request).
    assert _catalogue_thinking(SimpleNamespace(name="gpt-oss-20b")) == "harmony"
    assert _catalogue_thinking(SimpleNamespace(name="not-in-the-catalogue.gguf")) is None
