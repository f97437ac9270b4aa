"""Remote servers: OpenAI-compatible endpoints on other machines (llama-server, vLLM, Ollama,
LM Studio, another Hearth's `assistant serve`).

The list (name -> URL) is a small JSON file in the data directory. API keys never
go there, nor into the history or the logs: they live in the OS keyring where one
exists (the `keyring` package), else in a file only the user can read
(`remote-keys.json`, mode 0600).
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from common.errors import UserError
from common.paths import data_dir

log = logging.getLogger(__name__)
KEYRING_SERVICE = "hearth-remote"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
_lock = threading.Lock()


@dataclass
class Remote:
    name: str
    url: str  # as the user gave it, normalised: scheme://host[:port][/path], no trailing slash

    @property
    def api_base(self) -> str:
        """The OpenAI API root: the URL with /v1 (added when the user left it out)."""
        return self.url if self.url.endswith("/v1") else self.url + "/v1"

    @property
    def root(self) -> str:
        """The server's root, where llama-server and Ollama keep their own endpoints."""
        return self.url[: -len("/v1")] if self.url.endswith("/v1") else self.url

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc


def normalise_url(url: str) -> str:
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"{url!r} is not a server address; give one like http://192.168.1.20:8080.")
    if parts.username or parts.password:
        raise UserError("Put the API key in --api-key, not in the address.")
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")


def _list_file() -> Path:
    return data_dir() / "remotes.json"


def _keys_file() -> Path:
    return data_dir() / "remote-keys.json"


def _keyring_account(name: str) -> str:
    """The keyring's user name for a remote's key: its data directory's too, so that two data
    directories (ASSISTANT_HOME) never share or overwrite each other's keys."""
    return f"{name} @ {data_dir()}"


def list_remotes() -> list[Remote]:
    try:
        data = json.loads(_list_file().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        log.warning("the list of remote servers cannot be read: %s", exc)
        return []
    return [Remote(name=e["name"], url=e["url"]) for e in data.get("remotes", [])
            if isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("url"), str)]


def get(name: str) -> Remote | None:
    return next((r for r in list_remotes() if r.name == name), None)


def require(name: str) -> Remote:
    remote = get(name)
    if remote is None:
        known = ", ".join(r.name for r in list_remotes()) or "none yet"
        raise UserError(f"There is no remote server named {name!r} (known: {known}); "
                        "add one with `assistant remote add NAME URL`.")
    return remote


def _write_list(remotes: list[Remote]) -> None:
    path = _list_file()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"remotes": [asdict(r) for r in remotes]}, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def add(name: str, url: str, api_key: str | None = None) -> Remote:
    if not _NAME.match(name):
        raise UserError("A remote's name is letters, digits, '.', '_' or '-' (up to 40), starting with a letter "
                        "or digit.")
    remote = Remote(name=name, url=normalise_url(url))
    with _lock:
        remotes = [r for r in list_remotes() if r.name != name] + [remote]
        _write_list(remotes)
    set_key(name, api_key)
    return remote


def remove(name: str) -> Remote:
    remote = require(name)
    with _lock:
        _write_list([r for r in list_remotes() if r.name != name])
    set_key(name, None)
    return remote


# --- API keys ---------------------------------------------------------------------------------------


def _keyring():
    """The OS keyring, or None where there is none (a headless Linux without a secret service)."""
    try:
        import keyring
        from keyring.backends import fail, null

        backend = keyring.get_keyring()
        if isinstance(backend, (fail.Keyring, null.Keyring)):
            return None
        return keyring
    except Exception as exc:  # a broken keyring setup must not stop the app: the file fallback works
        log.info("no usable OS keyring (%s); remote keys go to a private file", type(exc).__name__)
        return None


def _read_key_file() -> dict[str, str]:
    try:
        data = json.loads(_keys_file().read_text(encoding="utf-8"))
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}


def _write_key_file(keys: dict[str, str]) -> None:
    path = _keys_file()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)  # 0600 from the start
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(keys, f)
    os.replace(tmp, path)


def key_storage() -> str:
    """Where keys are kept, in words: shown by `remote list`."""
    ring = _keyring()
    return f"the OS keyring ({type(ring.get_keyring()).__name__})" if ring else f"{_keys_file()} (readable only by you)"


def set_key(name: str, api_key: str | None) -> None:
    ring = _keyring()
    with _lock:
        if ring is not None:
            try:
                if api_key:
                    ring.set_password(KEYRING_SERVICE, _keyring_account(name), api_key)
                else:
                    for account in (_keyring_account(name), name):  # and one stored by an earlier version
                        try:
                            ring.delete_password(KEYRING_SERVICE, account)
                        except Exception:  # keyring raises PasswordDeleteError when there was none
                            log.debug("no key stored for %s under %s", name, account)
                return
            except Exception as exc:
                log.warning("the OS keyring refused the key for %s (%s); using the private file", name, exc)
        keys = _read_key_file()
        if api_key:
            keys[name] = api_key
        else:
            keys.pop(name, None)
        if keys or _keys_file().exists():
            _write_key_file(keys)


def get_key(name: str) -> str | None:
    ring = _keyring()
    if ring is not None:
        try:
            # A key stored before keys were kept per data directory sits under the bare name.
            key = ring.get_password(KEYRING_SERVICE, _keyring_account(name)) or ring.get_password(KEYRING_SERVICE, name)
            if key:
                return key
        except Exception as exc:
            log.warning("the OS keyring could not be read (%s)", exc)
    return _read_key_file().get(name)


# --- Specs ------------------------------------------------------------------------------------------


def split_spec(spec: str) -> tuple[str, Remote] | None:
    """`MODEL@REMOTE` names a model on a known remote; anything else is local (None)."""
    if not isinstance(spec, str) or "@" not in spec:
        return None
    model, _, name = spec.rpartition("@")
    remote = get(name)
    if not model or remote is None:
        return None
    return model, remote
