"""Issue 22 at the local API: the official `openai` client sends an image as a data URL to the real server,
the real runner and a tiny random model that sees; a web address is refused (the server never fetches);
each bad image and a blind model are a 400 in OpenAI's format; nothing is saved half; remote backends pass
image parts on as they are."""

from __future__ import annotations

import base64
import json

import httpx
import openai
import pytest

from assistant.engine import LoadSettings, LocalEngine
from assistant.server import ServerConfig, ServerController
from assistant.server.config import save_settings
from tests.support.tiny_vision import TOKENS_PER_IMAGE, bad_images, jpeg_bytes, png_bytes, write_tiny_vision_model
from tests.support.window import open_services

pytestmark = pytest.mark.llama_cpp

KEY = "sk-test-images-0123456789"


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def image_message(url: str, text: str = "What is in this picture?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("server-home")
        mp.setenv("ASSISTANT_HOME", str(home / "data"))
        model, _ = write_tiny_vision_model(home / "models")
        services = open_services(home, LocalEngine())
        save_settings(services.settings, save_conversations=True)
        summary = services.chat.load(str(model), LoadSettings(n_ctx=1024, n_threads=1)).result(120)
        controller = ServerController(services, ServerConfig(port=0, api_key=KEY))
        controller.start()
        try:
            yield services, controller, summary.name, str(model)
        finally:
            controller.stop()
            services.close()


def client(controller) -> openai.OpenAI:
    return openai.OpenAI(base_url=controller.url, api_key=KEY, max_retries=0, timeout=60)


def conversations(services) -> int:
    return services.history.count_conversations()


def test_the_openai_client_sends_an_image_as_a_data_url(served):
    services, controller, model, _path = served
    before = conversations(services)
    reply = client(controller).chat.completions.create(
        model=model, messages=image_message(data_url(png_bytes(48, 32))), max_tokens=4, temperature=0)
    assert reply.choices[0].message.content is not None
    stats = reply.model_extra["hearth"]
    assert stats["images"]["count"] == 1 and stats["images"]["tokens"] == TOKENS_PER_IMAGE
    assert conversations(services) == before + 1
    saved = services.history.get_conversation(services.history.list_conversations(1)[0].id)
    assert saved.messages[0].images[0].mime == "image/png"
    # Streaming too, and a JPEG labelled as a PNG is read as what it is.
    stream = client(controller).chat.completions.create(
        model=model, messages=image_message(data_url(jpeg_bytes(), "image/png")), max_tokens=3, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) is not None


@pytest.mark.parametrize("url", ["https://example.com/cat.png", "http://127.0.0.1:9/secret.png",
                                 "HTTPS://EXAMPLE.COM/A.PNG"])
def test_a_web_address_is_refused_and_never_fetched(served, url):
    services, controller, model, _path = served
    before = conversations(services)
    with pytest.raises(openai.BadRequestError) as caught:
        client(controller).chat.completions.create(model=model, messages=image_message(url), max_tokens=4)
    error = caught.value.body
    assert caught.value.status_code == 400 and error["code"] == "image_url_not_allowed"
    assert "never fetches URLs" in error["message"] and error["param"] == "messages[0].content[1].image_url"
    assert conversations(services) == before


@pytest.mark.parametrize("kind", sorted(k for k in bad_images() if k != "too_many_bytes"))
def test_each_bad_image_is_a_400_in_openai_format_and_nothing_is_saved(served, kind):
    services, controller, model, _path = served
    data, word = bad_images()[kind]
    before = conversations(services)
    response = httpx.post(controller.url + "/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                          json={"model": model, "messages": image_message(data_url(data)), "max_tokens": 4},
                          timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_image" and word in error["message"] and error["message"].endswith(".")
    assert "\n" not in error["message"]
    assert conversations(services) == before
    # The server and the runner carry on.
    ok = client(controller).chat.completions.create(model=model, messages=image_message(data_url(png_bytes())),
                                                    max_tokens=2)
    assert ok.choices[0].finish_reason in ("stop", "length")


def test_an_image_for_a_model_that_cannot_see_is_a_400(served, tiny_model_path):
    services, controller, model, path = served
    services.chat.load(str(tiny_model_path), LoadSettings(n_ctx=256, n_threads=1, chat_format="chatml")).result(60)
    try:
        before = conversations(services)
        with pytest.raises(openai.BadRequestError) as caught:
            client(controller).chat.completions.create(model="tiny", messages=image_message(data_url(png_bytes())),
                                                       max_tokens=2)
        assert caught.value.body["code"] == "model_cannot_see" and "cannot see images" in caught.value.body["message"]
        assert conversations(services) == before
    finally:
        services.chat.load(path, LoadSettings(n_ctx=1024, n_threads=1)).result(60)


def test_image_parts_are_refused_outside_user_messages_and_beyond_the_count(served):
    services, controller, model, _path = served
    url = data_url(png_bytes())
    parts = [{"type": "image_url", "image_url": {"url": url}}]
    for messages, words in (
        ([{"role": "system", "content": parts}, {"role": "user", "content": "hi"}], "only user messages"),
        ([{"role": "user", "content": parts * 17}], "more than 16 images"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}], "must be a data URL"),
        ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}], "text and image_url parts"),
    ):
        response = httpx.post(controller.url + "/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                              json={"model": model, "messages": messages}, timeout=60)
        assert response.status_code == 400 and words in response.json()["error"]["message"], response.text


def test_a_remote_backend_gets_the_image_parts_as_they_are():
    from assistant.engine.remote import openai_message
    from assistant.images import attachment

    image = attachment(png_bytes(), "a.png")
    message = openai_message({"role": "user", "content": "What is it?", "images": [image]})
    assert message == {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(image.data)}}, {"type": "text", "text": "What is it?"}]}
    assert openai_message({"role": "user", "content": "plain"}) == {"role": "user", "content": "plain"}
    assert json.dumps(message)  # plain data on the wire


def test_another_hearth_as_a_remote_gets_the_images_and_answers_about_them(served, tmp_path):
    """A remote backend passes image parts on as they are: here to this Hearth's own server, which sees."""
    from assistant import remotes
    from assistant.chat_service import ChatService, TurnFinished, TurnRequest
    from assistant.engine import EngineRouter, GenerationSettings
    from assistant.history import HistoryStore
    from assistant.images import attachment

    services, controller, model, _path = served
    remotes.add("lab", controller.url)
    remotes.set_key("lab", KEY)
    before = conversations(services)
    with HistoryStore.open(tmp_path / "client.db") as history:
        chat = ChatService(EngineRouter(), history)
        try:
            summary = chat.load(f"{model}@lab").result(60)
            assert summary.vision is None  # only the server knows: it answers, or says why not
            image = attachment(png_bytes(48, 32), "remote.png")
            handle = chat.submit(TurnRequest(text="What is this?", images=[image],
                                             settings=GenerationSettings(max_tokens=3, seed=1)))
            finished = handle.result(120)
            assert isinstance(finished, TurnFinished) and finished.stats["stop_reason"] in ("eos", "length")
            # The server received the picture itself (a data URL) and saved it with the message.
            served_conv = services.history.get_conversation(services.history.list_conversations(1)[0].id)
            assert conversations(services) == before + 1
            assert services.history.image_data(served_conv.messages[0].images[0]) == image.data
            # And the client kept it too.
            assert history.get_conversation(finished.conversation_id).messages[0].images[0].sha256 == image.sha256
        finally:
            chat.close()
