"""Random-weight models with each thinking format's vocabulary and its family's real chat template.

The special tokens are marked as the real models mark them (CONTROL: plain detokenizing renders
them as nothing; USER_DEFINED: as their text), so the runner must render the markers itself. A
random model never writes a delimiter on its own: tests force one through llama.cpp with a GBNF
grammar (`GRAMMARS`), whose `<token>` and `<[id]>` terms match exactly one special token.
"""

from __future__ import annotations

from pathlib import Path

from gguf import TokenType as TT

from tests.support.tiny_gguf import write_tiny_llama

TEMPLATES = Path(__file__).resolve().parent.parent / "data" / "templates"

# format -> (template file, special tokens with their types, the end-of-sequence token)
FAMILIES = {
    "think_tags": ("Qwen3.5-4B.jinja",
                   [("<|im_start|>", TT.CONTROL), ("<|im_end|>", TT.CONTROL),
                    ("<think>", TT.USER_DEFINED), ("</think>", TT.USER_DEFINED)], "<|im_end|>"),
    "gemma4_channel": ("google-gemma-4-31B-it.jinja",
                       [("<|turn>", TT.CONTROL), ("<turn|>", TT.CONTROL), ("<|think|>", TT.CONTROL),
                        ("<|channel>", TT.CONTROL), ("<channel|>", TT.CONTROL)], "<turn|>"),
    "harmony": ("openai-gpt-oss-120b.jinja",
                [("<|start|>", TT.CONTROL), ("<|end|>", TT.CONTROL), ("<|message|>", TT.CONTROL),
                 ("<|channel|>", TT.CONTROL), ("<|constrain|>", TT.CONTROL), ("<|return|>", TT.CONTROL),
                 ("<|call|>", TT.CONTROL)], "<|return|>"),
    "mistral_think": ("mistralai-Ministral-3-14B-Reasoning-2512.jinja",
                      [("[INST]", TT.CONTROL), ("[/INST]", TT.CONTROL), ("[SYSTEM_PROMPT]", TT.CONTROL),
                       ("[/SYSTEM_PROMPT]", TT.CONTROL), ("[THINK]", TT.CONTROL), ("[/THINK]", TT.CONTROL)], "</s>"),
}

THOUGHT = "I think so"
ANSWER = "the answer"


def token_id(fmt: str, text: str) -> int:
    """A special token's id: after <unk>, <s>, </s> and the 256 byte tokens, in FAMILIES' order."""
    return 259 + [t for t, _ in FAMILIES[fmt][1]].index(text)


def grammar(fmt: str) -> str:
    """A reply with the format's delimiters as special tokens, a thought and an answer, then the end."""
    if fmt == "think_tags":  # Qwen3.5's generation prompt opened <think>: only the closing is written
        return f'root ::= "{THOUGHT}" </think> "\\n\\n{ANSWER}"'
    if fmt == "gemma4_channel":
        return f'root ::= <|channel> "thought\\n{THOUGHT}" <channel|> "{ANSWER}"'
    if fmt == "harmony":
        return (f'root ::= <|channel|> "analysis" <|message|> "{THOUGHT}" <|end|> <|start|> "assistant" '
                f'<|channel|> "final" <|message|> "{ANSWER}"')
    think, end = token_id(fmt, "[THINK]"), token_id(fmt, "[/THINK]")
    return f'root ::= <[{think}]> "{THOUGHT}" <[{end}]> "{ANSWER}"'


def template(fmt: str) -> str:
    return (TEMPLATES / FAMILIES[fmt][0]).read_text(encoding="utf-8")


def write_thinking_model(path, fmt: str, *, n_ctx: int = 2048, **shape) -> Path:
    """`shape`: write_tiny_llama's size arguments (n_layers, n_embd, quant...) for a bigger model."""
    file, special, eos = FAMILIES[fmt]
    return write_tiny_llama(path, chat_template=template(fmt), special_tokens=special, eos_token=eos, n_ctx=n_ctx,
                            name=f"tiny-{fmt}", **shape)
