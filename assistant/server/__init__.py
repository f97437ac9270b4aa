"""The local OpenAI-compatible API server: other apps use the loaded model, through the one chat service.

- `config`: where it listens and what it lets through, checked before it binds.
- `security`: the Host allow-list, the Origin check with CORS, the API key.
- `openai_request` / `openai_reply`: OpenAI's JSON in and out, `timings` and the app's record beside it.
- `turns`: the chat service's events delivered to the asyncio loop.
- `app`: the Starlette app; `controller`: uvicorn in a background thread (window) or the foreground (CLI).
- `request_log`: who asked for what, for the window's live log and the CLI's lines.
"""

from assistant.server.config import DEFAULT_HOST, DEFAULT_PORT, ServerConfig, ServerConfigError, new_api_key
from assistant.server.controller import ServerController
from assistant.server.request_log import RequestLog, RequestRecord

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "RequestLog", "RequestRecord", "ServerConfig", "ServerConfigError",
           "ServerController", "new_api_key"]
