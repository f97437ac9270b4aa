"""The core of the assistant: engine, sessions, history and statistics. Never imports Qt."""
