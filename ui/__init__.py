"""The PySide6 front end. Talks to the core only; never imports llama_cpp."""
