"""The runner: the child process that owns llama.cpp. Only modules in this package import it."""
