"""The server's safety rules, without a model: where it may listen, which Host and Origin pass, limits."""

from __future__ import annotations

import socket

import pytest

from assistant.server.config import ServerConfig, ServerConfigError, is_loopback, normalize_origin, saved_settings
from assistant.server.controller import bind
from assistant.server.openai_request import parse_chat, parse_completion
from assistant.server.security import host_name
from assistant.server.errors import ApiError
from common.settings_store import SettingsStore

KEY = "sk-a-long-enough-key"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_loopback_addresses_need_nothing(host):
    assert is_loopback(host)
    ServerConfig(host=host).check()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1"])
def test_any_other_address_needs_a_key_and_the_explicit_flag(host):
    assert not is_loopback(host)
    with pytest.raises(ServerConfigError, match="key"):
        ServerConfig(host=host).check()
    with pytest.raises(ServerConfigError, match="--allow-network"):
        ServerConfig(host=host, api_key=KEY).check()
    with pytest.raises(ServerConfigError, match="key"):
        ServerConfig(host=host, allow_network=True).check()
    ServerConfig(host=host, api_key=KEY, allow_network=True).check()


@pytest.mark.parametrize("key", ["", "   ", "short", "has a space in it", "nön-ascii-key", "tab\there-key-x"])
def test_a_weak_or_unsendable_key_is_refused(key):
    with pytest.raises(ServerConfigError):
        ServerConfig(api_key=key).check()


@pytest.mark.parametrize("origin", ["evil.example", "http://x.test/path", "ftp://x.test", "http://", "null",
                                    "http://user@x.test"])
def test_an_allowed_origin_must_be_an_origin(origin):
    with pytest.raises(ServerConfigError):
        ServerConfig(allowed_origins=[origin]).check()


def test_origins_are_compared_as_browsers_send_them():
    assert normalize_origin("HTTP://LocalHost:3000/") == "http://localhost:3000"
    assert normalize_origin("https://[::1]:8443") == "https://[::1]:8443"


@pytest.mark.parametrize("header, name", [("localhost:4327", "localhost"), ("127.0.0.1", "127.0.0.1"),
                                          ("[::1]:4327", "::1"), ("LOCALHOST.:1", "localhost"),
                                          ("evil.example:4327", "evil.example"), ("[::1", ""), ("", "")])
def test_host_header_names(header, name):
    assert host_name(header) == name


def test_the_host_allow_list_is_loopback_the_bound_address_and_the_users_names():
    names = ServerConfig(allowed_hosts=["MyBox.lan"]).host_allow_list()
    assert {"localhost", "127.0.0.1", "::1", "mybox.lan"} <= names and "evil.example" not in names
    everywhere = ServerConfig(host="0.0.0.0", api_key=KEY, allow_network=True).host_allow_list()
    assert "127.0.0.1" in everywhere and socket.gethostname().lower() in everywhere


def test_a_port_in_use_is_one_sentence():
    taken = bind("127.0.0.1", 0)
    try:
        with pytest.raises(ServerConfigError, match="already in use"):
            bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def test_server_settings_default_to_off_unsaved_and_keyless(tmp_path):
    settings = saved_settings(SettingsStore(tmp_path / "settings.json"))
    assert settings == {"enabled": False, "port": 4327, "api_key": None, "save_conversations": False}


def test_requests_translate_to_the_engines_terms():
    call = parse_chat({"model": "m", "messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "there"}]}],
        "max_completion_tokens": 7, "max_tokens": 99, "stop": "END", "seed": 5, "top_k": 3,
        "stream": True, "stream_options": {"include_usage": True}, "user": "ignored", "tools": []},
        ServerConfig())
    assert call.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello, there"}]
    assert call.max_tokens == 7 and call.stream and call.include_usage
    assert call.sampling == {"stop": ["END"], "seed": 5, "top_k": 3}
    text = parse_completion({"prompt": ["Once"], "max_tokens": 4}, ServerConfig())
    assert text.kind == "complete" and text.prompt == "Once" and text.max_tokens == 4


def test_the_message_limit_is_the_configured_one():
    messages = [{"role": "user", "content": "hi"}] * 5
    with pytest.raises(ApiError) as refused:
        parse_chat({"messages": messages}, ServerConfig(max_messages=4))
    assert refused.value.status == 400 and refused.value.param == "messages"
