"""Render a conversation into the prompt text the model was trained on.

Order of choice: a user's Jinja template override, a user's named format, the
template the GGUF carries (or, for a GGUF without one, the format our catalogue
names for it), and last a known format picked from the architecture.
Jinja templates always render in llama-cpp-python's sandbox (CVE-2024-34359): a
model file is untrusted input.
"""

from dataclasses import dataclass

import jinja2
from llama_cpp import llama_chat_format as formats

from assistant.engine.runner.limits import TimeLimitExceeded, time_limit
from common.errors import UserError
from common.terminal import shorten

TEMPLATE_SECONDS = 2.0  # a real template renders a conversation in milliseconds
ERROR_CHARS = 300  # what a template's own error message may add to a sentence
_FIXED_ALLOWANCE_CHARS = 200_000  # what a template may add beyond the messages (role tags, a default system prompt)


class TemplateRefused(UserError):
    """The chat template cannot produce a usable prompt: broken, or hostile."""

# llama-cpp-python's built-in formats, by the names users know them by.
NAMED_FORMATS = {
    "gemma": formats.format_gemma,
    "llama-2": formats.format_llama2,
    "llama-3": formats.format_llama3,
    "chatml": formats.format_chatml,
    "qwen": formats.format_qwen,
    "mistral-instruct": formats.format_mistral_instruct,
}
# Formats whose template has no system role: the system prompt goes into the
# first user turn instead, as Gemma's own template does.
_NO_SYSTEM_ROLE = {"gemma", "mistral-instruct", "llama-2"}


def format_for_architecture(arch: str, vocab_size: int) -> str:
    """A known format for a GGUF that carries no template."""
    if arch.startswith("gemma"):
        return "gemma"
    if arch == "llama":
        return "llama-3" if vocab_size >= 128_000 else "llama-2"
    if arch.startswith("mistral"):
        return "mistral-instruct"
    return "chatml"  # Qwen, Phi-3 fine-tunes, SmolLM and most others use ChatML


@dataclass
class RenderedPrompt:
    text: str
    stop: list[str]
    add_bos: bool  # whether the tokenizer should add BOS (Jinja templates write their own)


class ChatRenderer:
    def __init__(self, *, source: str, format_name: str | None = None, template: str | None = None,
                 bos_token: str = "", eos_token: str = ""):
        self.source = source  # "override", "gguf" or "fallback:<arch>" — shown in stats
        self.format_name = format_name
        self.template = template  # the Jinja text (None for a named format): what thinking controls look for
        self._formatter = None
        if template is not None:
            try:
                self._formatter = formats.Jinja2ChatFormatter(
                    template=template, eos_token=eos_token, bos_token=bos_token, add_generation_prompt=True
                )
            except jinja2.TemplateError as exc:
                raise UserError(f"The chat template cannot be used: {shorten(exc, ERROR_CHARS)}.") from None
        elif format_name not in NAMED_FORMATS:
            known = ", ".join(sorted(NAMED_FORMATS))
            raise UserError(f"There is no chat format named {format_name!r}; known formats: {known}.")

    @property
    def label(self) -> str:
        return f"{self.source}:{self.format_name}" if self.format_name else self.source

    def render(self, messages: list[dict], template_kwargs: dict | None = None) -> RenderedPrompt:
        """`template_kwargs`: variables a Jinja template reads (`enable_thinking`, `reasoning_effort`);
        a named format has none."""
        if self._formatter is not None:
            try:
                result = self._formatter(messages=messages,  # type: ignore[arg-type]  # plain role/content dicts
                                         **(template_kwargs or {}))
            except (jinja2.TemplateError, ValueError, TypeError) as exc:
                # Templates raise on conversations they reject (e.g. roles that do not alternate). What they say
                # is the template's text: cut to a sentence (raise_exception('x' * 20_000_000) is one line of it).
                raise UserError(f"The model's chat template rejected this conversation: "
                                f"{shorten(exc, ERROR_CHARS)}.") from None
            stop = [s for s in ([result.stop] if isinstance(result.stop, str) else result.stop or []) if s]
            return RenderedPrompt(result.prompt, stop, add_bos=not result.added_special)
        if self.format_name in _NO_SYSTEM_ROLE:
            messages = _fold_system_into_first_user(messages)
        result = NAMED_FORMATS[str(self.format_name)](messages=messages)
        stop = [result.stop] if isinstance(result.stop, str) else list(result.stop or [])
        return RenderedPrompt(result.prompt, stop, add_bos=True)


def _fold_system_into_first_user(messages: list[dict]) -> list[dict]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system:
        for m in rest:
            if m["role"] == "user":
                m["content"] = f"{system}\n\n{m['content']}"
                break
    return rest


def choose_renderer(*, gguf_template: str | None, arch: str, vocab_size: int, bos_token: str,
                    eos_token: str, override_template: str | None = None,
                    override_format: str | None = None, catalogue_format: str | None = None) -> ChatRenderer:
    if override_template:
        return ChatRenderer(source="override", template=override_template, bos_token=bos_token, eos_token=eos_token)
    if override_format:
        return ChatRenderer(source="override", format_name=override_format)
    if catalogue_format and not gguf_template:
        return ChatRenderer(source="catalogue", format_name=catalogue_format)
    if gguf_template:
        return ChatRenderer(source="gguf", template=gguf_template, bos_token=bos_token, eos_token=eos_token)
    return ChatRenderer(source=f"fallback-{arch}", format_name=format_for_architecture(arch, vocab_size))


def render_safely(renderer: ChatRenderer, messages: list[dict], seconds: float = TEMPLATE_SECONDS,
                  template_kwargs: dict | None = None) -> RenderedPrompt:
    """Render with the limits a model file must not escape: time, output size, and non-empty text.

    A template is code from the model file. The sandbox stops it reaching Python's
    internals, but not from looping for minutes, building gigabytes, or rendering
    nothing (an empty prompt makes llama.cpp abort the process).
    """
    fix = " Choose a chat format instead (for example --chat-format chatml), or use text completion."
    # A long conversation takes longer to render, and that is not the template's fault: the limit grows
    # with it (0.1 ms a message; the app sends at most what can fit the context).
    seconds += len(messages) / 10_000
    try:
        with time_limit(seconds):
            rendered = renderer.render(messages, template_kwargs)
    except TimeLimitExceeded:
        raise TemplateRefused(f"The model's chat template did not finish within {seconds:g} s, so it is broken "
                              f"or hostile.{fix}") from None
    except MemoryError:
        raise TemplateRefused("The model's chat template tried to use more memory than the model is allowed, "
                              f"so it is broken or hostile.{fix}") from None
    except RecursionError:
        raise TemplateRefused(f"The model's chat template recursed without end, so it is broken or hostile.{fix}") from None
    given = sum(len(str(m.get("content") or "")) for m in messages)
    limit = 2 * given + _FIXED_ALLOWANCE_CHARS
    if len(rendered.text) > limit:
        raise TemplateRefused(f"The model's chat template produced {len(rendered.text):,} characters from "
                              f"{given:,} characters of conversation, so it is broken or hostile.{fix}")
    if not rendered.text.strip():
        raise TemplateRefused(f"The model's chat template renders the conversation as an empty prompt, so the "
                              f"model would have nothing to answer.{fix}")
    return rendered
