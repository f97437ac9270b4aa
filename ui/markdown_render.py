"""Markdown replies to the HTML subset that Qt's rich text engine draws.

markdown-it-py parses (CommonMark plus GitHub tables and strikethrough); Pygments
colours code blocks with inline styles, since Qt's rich text has no stylesheets
for classes. Each code block gets a "Copy" link whose href names the block, so a
click can copy exactly that code.
"""

import html
from dataclasses import dataclass, field

from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name, guess_lexer
from pygments.util import ClassNotFound


@dataclass
class RenderedMarkdown:
    html: str
    code_blocks: list[str] = field(default_factory=list)


def _lexer(lang: str, code: str):
    try:
        return get_lexer_by_name(lang) if lang else guess_lexer(code)
    except ClassNotFound:
        return TextLexer()


class MarkdownRenderer:
    def __init__(self, dark: bool = False):
        self.dark = dark
        style = "monokai" if dark else "friendly"
        self._formatter = HtmlFormatter(style=style, noclasses=True, nowrap=True)
        self._code_bg = "#272822" if dark else "#f4f4f4"
        self._code_fg = "#f8f8f2" if dark else "#1f1f1f"
        self._link = "#8ab4f8" if dark else "#1a56db"
        self._md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["table", "strikethrough"])
        # markdown-it binds a rule to its renderer, so the rule is a plain function here.
        def fence(_renderer, tokens, idx, options, env):
            return self._fence(tokens[idx], env)

        self._md.add_render_rule("fence", fence)
        self._md.add_render_rule("code_block", fence)

    def _fence(self, token, env) -> str:
        code = token.content
        lang = (token.info or "").strip().split(" ")[0]
        blocks = env.setdefault("code_blocks", [])
        blocks.append(code)
        n = len(blocks) - 1
        body = highlight(code, _lexer(lang, code), self._formatter) if len(code) < 100_000 else html.escape(code)
        label = html.escape(lang or "code")
        return (
            f'<table width="100%" cellspacing="0" cellpadding="6" style="background:{self._code_bg};'
            f' margin-top:4px; margin-bottom:4px">'
            f'<tr><td style="color:#888; font-size:small">{label}</td>'
            f'<td align="right" style="font-size:small"><a href="copy:{n}" style="color:{self._link}">Copy</a>'
            f'</td></tr><tr><td colspan="2"><pre style="color:{self._code_fg}; margin:0;'
            f' font-family:monospace; white-space:pre-wrap">{body}</pre></td></tr></table>'
        )

    def render(self, text: str) -> RenderedMarkdown:
        env: dict = {}
        body = self._md.render(text, env)
        body = body.replace("<table>", '<table border="1" cellspacing="0" cellpadding="4"'
                                       ' style="border-collapse:collapse">')
        body = body.replace("<code>", f'<code style="background:{self._code_bg}; font-family:monospace">')
        return RenderedMarkdown(html=body, code_blocks=env.get("code_blocks", []))
