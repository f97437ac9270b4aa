"""Thinking on/off, effort and budget reach each family's real chat template the way it reads them."""

from __future__ import annotations

import pytest

from assistant.engine.runner.chat_template import ChatRenderer, render_safely
from assistant.engine.runner.generation import _fit
from assistant.engine.settings import GenerationSettings
from assistant.engine.thinking import detect_format, opens_thinking
from assistant.engine.thinking_controls import EFFORT_BUDGETS, check, plan, with_system_note
from common.errors import UserError
from tests.support import thinking_models as tm

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]


def render(fmt, settings):
    template = tm.template(fmt)
    renderer = ChatRenderer(source="gguf", template=template, bos_token="<s>", eos_token="</s>")
    p = plan(settings, detect_format(template), template)
    text = render_safely(renderer, with_system_note(CHAT, p.system_note), template_kwargs=p.template_kwargs).text
    return p, text


def test_qwen35_thinking_on_by_default_and_off_through_enable_thinking():
    p, on = render("think_tags", GenerationSettings())
    assert p.template_kwargs == {} and opens_thinking("think_tags", on)
    p, off = render("think_tags", GenerationSettings(thinking="off"))
    assert p.template_kwargs == {"enable_thinking": False} and off.endswith("<think>\n\n</think>\n\n")
    assert not opens_thinking("think_tags", off) and p.budget is None


def test_gemma4_thinking_is_switched_on_through_enable_thinking():
    _, default = render("gemma4_channel", GenerationSettings())
    assert default.endswith("<|turn>model\n<|channel>thought\n<channel|>")  # off unless asked
    p, on = render("gemma4_channel", GenerationSettings(thinking="on"))
    assert p.template_kwargs == {"enable_thinking": True}
    assert "<|think|>" in on and on.endswith("<|turn>model\n")


def test_gpt_oss_effort_is_its_own_reasoning_line():
    for effort in ("low", "medium", "high"):
        p, text = render("harmony", GenerationSettings(thinking_effort=effort))
        assert f"Reasoning: {effort}" in text and p.budget is None  # the model's own effort, not a budget
    p, _ = render("harmony", GenerationSettings(thinking_effort="low", thinking_budget=100))
    assert p.budget == 100  # an explicit budget applies as well


def test_effort_is_a_budget_for_families_without_one():
    for fmt in ("think_tags", "gemma4_channel", "mistral_think"):
        for effort, budget in EFFORT_BUDGETS.items():
            p, _ = render(fmt, GenerationSettings(thinking_effort=effort))
            assert p.budget == budget and "reasoning_effort" not in p.template_kwargs
    p, _ = render("think_tags", GenerationSettings(thinking_effort="high", thinking_budget=64))
    assert p.budget == 64  # the explicit budget wins


def test_ministral_off_without_a_switch_gets_an_empty_block():
    p, text = render("mistral_think", GenerationSettings(thinking="off"))
    assert p.close_prompt and p.template_kwargs == {}


class _Model:
    """What _fit asks of a model: tokens (one per character here) and a context size."""

    n_ctx = 100_000
    projector = None  # sees no images

    def tokenize(self, text, add_bos):
        return list(range(len(text) + 1))


@pytest.mark.parametrize("fmt, suffix", [("mistral_think", "[/INST][THINK][/THINK]"),
                                         ("harmony", "<|start|>assistant<|channel|>analysis<|message|><|end|>"
                                                     "<|start|>assistant<|channel|>final<|message|>")])
def test_off_appends_the_empty_block_to_the_prompt(fmt, suffix):
    template = tm.template(fmt)
    renderer = ChatRenderer(source="gguf", template=template, bos_token="<s>", eos_token="</s>")
    s = GenerationSettings(thinking="off")
    fitted = _fit(_Model(), renderer, CHAT, None, s, None, plan=plan(s, fmt, template))
    assert fitted.text.endswith(suffix) and not opens_thinking(fmt, fitted.text)


def test_a_continued_reply_starts_after_closed_thinking():
    template = tm.template("think_tags")
    renderer = ChatRenderer(source="gguf", template=template, bos_token="<s>", eos_token="</s>")
    s = GenerationSettings()
    fitted = _fit(_Model(), renderer, CHAT, None, s, "The answer is", plan=plan(s, "think_tags", template))
    assert fitted.text.endswith("<think>\n\n</think>\n\nThe answer is")


def test_no_think_goes_into_the_system_message_where_a_template_looks_for_it():
    template = "{% for m in messages %}{{ m.content }}{% endfor %}{% if '/no_think' in messages[0].content %}{% endif %}<think>"
    p = plan(GenerationSettings(thinking="off"), "think_tags", template)
    assert p.system_note == "/no_think"
    assert with_system_note(CHAT, p.system_note)[0]["content"] == "Be brief.\n/no_think"
    assert with_system_note(CHAT[1:], "/no_think")[0] == {"role": "system", "content": "/no_think"}


def test_format_override_and_none():
    assert plan(GenerationSettings(thinking_format="none"), "think_tags", "<think>").format is None
    assert plan(GenerationSettings(thinking_format="mistral_think"), None, "").format == "mistral_think"
    assert plan(GenerationSettings(), None, "").format is None


@pytest.mark.parametrize("field, value", [("thinking", "maybe"), ("thinking_effort", "huge"),
                                          ("thinking_budget", -1), ("thinking_format", "xml")])
def test_bad_values_are_one_sentence(field, value):
    with pytest.raises(UserError) as err:
        check(GenerationSettings(**{field: value}))
    assert str(err.value).endswith(".") and "\n" not in str(err.value)
