"""The model catalogue and everything that finds, fetches, verifies and sizes a model.

Never imports Qt or llama_cpp: it reads GGUF files with the `gguf` package only.
"""
