"""A reasoning model through the local API, with the official `openai` client: the thinking comes as
`message.reasoning_content` / `delta.reasoning_content`, never in `content`, counted in
`usage.completion_tokens_details.reasoning_tokens`; the controls arrive in other servers' names."""

from __future__ import annotations

import httpx
import openai
import pytest

from assistant.engine import LoadSettings, LocalEngine
from assistant.server import ServerConfig, ServerController
from tests.support import thinking_models as tm
from tests.support.window import open_services

pytestmark = pytest.mark.llama_cpp
KEY = "sk-test-thinking-0123456789"
ASK = [{"role": "user", "content": "Is it so?"}]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("server-thinking")
        mp.setenv("ASSISTANT_HOME", str(home / "data"))
        path = tm.write_thinking_model(home / "qwen.gguf", "think_tags")
        services = open_services(home, LocalEngine())
        summary = services.chat.load(str(path), LoadSettings(n_ctx=2048, n_threads=1)).result(120)
        controller = ServerController(services, ServerConfig(port=0, api_key=KEY))
        controller.start()
        try:
            client = openai.OpenAI(base_url=controller.url, api_key=KEY, max_retries=0, timeout=60)
            yield client, summary.name, controller.url
        finally:
            controller.stop()
            services.close()


def test_a_whole_reply_has_reasoning_content_and_reasoning_tokens(served):
    client, model, _ = served
    r = client.chat.completions.create(model=model, messages=ASK, max_tokens=80, temperature=0,
                                       extra_body={"grammar": tm.grammar("think_tags")})
    message = r.choices[0].message
    assert message.content == tm.ANSWER
    assert message.model_extra["reasoning_content"] == tm.THOUGHT
    usage = r.usage
    assert usage.completion_tokens_details.reasoning_tokens > 0
    assert usage.completion_tokens > usage.completion_tokens_details.reasoning_tokens  # all tokens, answer included
    assert "thinking" not in r.model_extra["hearth"]  # the record beside it does not repeat the text


def test_a_stream_sends_the_thinking_as_delta_reasoning_content(served):
    client, model, _ = served
    chunks = list(client.chat.completions.create(model=model, messages=ASK, max_tokens=80, temperature=0,
                                                 stream=True, stream_options={"include_usage": True},
                                                 extra_body={"grammar": tm.grammar("think_tags")}))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    thinking = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    content = "".join(d.content or "" for d in deltas)
    assert thinking == tm.THOUGHT and content == tm.ANSWER
    first_content = next(i for i, d in enumerate(deltas) if d.content)
    assert all(not (d.model_extra or {}).get("reasoning_content") for d in deltas[first_content:])
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens > 0


def test_controls_in_other_servers_names(served):
    client, model, url = served
    # enable_thinking false: Qwen3.5's template closes the thinking in the prompt, so nothing is thinking.
    r = client.chat.completions.create(model=model, messages=ASK, max_tokens=24, temperature=0,
                                       extra_body={"chat_template_kwargs": {"enable_thinking": False},
                                                   "grammar": 'root ::= "plain answer"'})
    assert r.choices[0].message.content == "plain answer"
    assert "reasoning_content" not in (r.choices[0].message.model_extra or {})
    assert r.usage.completion_tokens_details.reasoning_tokens == 0
    # A budget: the thinking is closed after it and the model answers.
    r = client.chat.completions.create(model=model, messages=ASK, max_tokens=40, temperature=0,
                                       extra_body={"thinking_budget_tokens": 8, "grammar": "root ::= [a-z ]+"})
    hearth = r.model_extra["hearth"]
    assert hearth["thinking_closed_by_budget"] and 8 <= r.usage.completion_tokens_details.reasoning_tokens <= 13
    assert r.choices[0].message.content
    # reasoning_effort "none" is thinking off, as llama-server reads it; others are checked.
    r = client.chat.completions.create(model=model, messages=ASK, max_tokens=24, temperature=0,
                                       reasoning_effort="none", extra_body={"grammar": 'root ::= "no thought"'})
    assert r.choices[0].message.content == "no thought"
    for body, param in (({"reasoning_effort": "maximal"}, "reasoning_effort"),
                        ({"chat_template_kwargs": {"enable_thinking": "yes"}}, "chat_template_kwargs.enable_thinking"),
                        ({"thinking_budget_tokens": "lots"}, "thinking_budget_tokens"),
                        ({"grammar": "root ::= " + "(" * 200 + '"x"' + ")" * 200}, "grammar")):
        raw = httpx.post(url + "/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=30,
                         json={"model": model, "messages": ASK, **body})
        assert raw.status_code == 400 and raw.json()["error"]["param"] == param
