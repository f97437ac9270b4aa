"""Imports read with limits, and the sentence names the limit that was hit; nothing is written."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from assistant.history import HistoryStore, ImportFormatError
from assistant.history.errors import ImportLimitError
from assistant.history.importing import ImportLimits, read_file, read_stream
from tests.support.history_files import REPO


def _doc(n_conversations=1, n_messages=2, stats=None):
    convs = []
    for c in range(n_conversations):
        msgs = [{"id": f"c{c}m{m}", "parent_id": f"c{c}m{m - 1}" if m else None, "role": "user", "content": "hi",
                 "status": "complete", "created_at": "2026-01-01T00:00:00+00:00", "stats": stats}
                for m in range(n_messages)]
        convs.append({"id": f"c{c}", "created_at": "2026-01-01T00:00:00+00:00", "messages": msgs})
    return {"format": "hearthchat-history", "version": 1, "conversations": convs}


@pytest.fixture
def store(tmp_path):
    with HistoryStore.open(tmp_path / "history.db") as s:
        yield s


class CountingStream(io.RawIOBase):
    """An endless stream that counts what was read from it."""

    def __init__(self, head: bytes, fill: bytes):
        self.head, self.fill, self.given = head, fill, 0

    def readable(self):
        return True

    def read(self, n=-1):
        n = 65536 if n is None or n < 0 else n
        data = (self.head[self.given:] + self.fill * (n // len(self.fill) + 1))[:n]
        self.given += len(data)
        return data


def test_a_stream_is_read_no_further_than_the_limit(store):
    limits = ImportLimits(max_bytes=100_000)
    stream = CountingStream(b'{"format": ', b" ")
    with pytest.raises(ImportLimitError, match="size limit") as info:
        read_stream(stream, limits)
    assert stream.given == limits.max_bytes + 1
    assert "Nothing was changed" in str(info.value)


def test_a_stream_of_zeros_or_noise_stops_after_one_read():
    for fill in (b"\0", b"\xff\xd8\xff", b"y\n"):
        stream = CountingStream(b"", fill)
        with pytest.raises(ImportFormatError, match="not a HearthChat history export"):
            read_stream(stream)
        assert stream.given <= 65536


def test_a_large_file_is_refused_before_reading(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(2_000_000)
    with pytest.raises(ImportLimitError, match=r"larger \(2\.0 MB\) than the 1\.0 MB an import reads"):
        read_file(big, ImportLimits(max_bytes=1_000_000))
    with pytest.raises(ImportFormatError, match="is a folder"):
        read_file(tmp_path)
    with pytest.raises(ImportFormatError, match="cannot be read"):
        read_file(tmp_path / "missing.json")


@pytest.mark.parametrize("depth", [70, 5_000, 1_000_000])
def test_deep_nesting_is_a_sentence(store, depth):
    text = '{"format": "hearthchat-history", "version": 1, "conversations": [], "junk": ' + "[" * depth + "]" * depth
    text += "}"
    if depth < 1000:  # deep, but inside what the parser takes: the kept fields are checked
        doc = _doc(stats={"a": json.loads("[" * depth + "]" * depth)})
        with pytest.raises(ImportLimitError, match=r"conversations\[0\]\.messages\[0\]\.stats is nested more than 64"):
            store.import_json(json.dumps(doc))
        with pytest.raises(ImportLimitError, match="nesting limit"):
            store.import_json(doc)  # the same, handed over as Python values
    else:
        with pytest.raises(ImportLimitError, match="nested more than 64 levels deep"):
            store.import_json(text)
    assert store.count_conversations() == 0


@pytest.mark.parametrize("number", ["1" + "0" * 30, "-" + "9" * 19, "1" + "0" * 5000, "1." + "1" * 100, "1e" + "9" * 50])
def test_huge_numbers_are_a_sentence(store, number):
    text = json.dumps(_doc()).replace('"version": 1', f'"version": 1, "extra": {number}')
    with pytest.raises(ImportLimitError, match="number size limit") as info:
        store.import_json(text)
    assert len(str(info.value)) < 400  # a 5,000-digit number is not quoted whole
    assert store.count_conversations() == 0


def test_numbers_a_history_stores_are_fine(store):
    doc = _doc(stats={"gen_tps": 1e300, "prompt_tokens": 9_223_372_036_854_775_807, "ttft_ms": -1.5e-300})
    result = store.import_json(json.dumps(doc))
    assert len(result.imported) == 1
    assert store.get_conversation(result.imported[0]).messages[0].stats["prompt_tokens"] == 2**63 - 1


def test_wild_values_handed_over_as_python_objects_cost_no_row(store):
    # Not through JSON: no parser limit applies, and still nothing overflows.
    doc = _doc(stats={"prompt_tokens": 10**30, "gen_tps": 10**400, "completion_tokens": float("nan")})
    [cid] = store.import_json(doc).imported
    row = store.speed_history()[0]
    assert row["prompt_tokens"] is None and row["gen_tps"] is None
    assert store.get_conversation(cid).messages[0].stats["prompt_tokens"] == 10**30
    with pytest.raises(ImportFormatError, match="newer HearthChat .history format version 1000000000000000000000000000000;"):
        store.import_json({**_doc(), "version": 10**30})


def test_too_many_conversations_or_messages(store):
    with pytest.raises(ImportLimitError, match="3 conversations, more than the 2 one import takes"):
        store.import_json(json.dumps(_doc(n_conversations=3)), ImportLimits(max_conversations=2))
    with pytest.raises(ImportLimitError, match="6 messages, more than the 5 one import takes"):
        store.import_json(json.dumps(_doc(n_conversations=2, n_messages=3)), ImportLimits(max_messages=5))
    assert store.count_conversations() == 0


def test_cli_import_from_an_endless_pipe_of_zeros_stops(tmp_path):
    zeros = subprocess.Popen([sys.executable, "-c", "import sys\nwhile True: sys.stdout.buffer.write(bytes(65536))"],
                             stdout=subprocess.PIPE)
    try:
        proc = subprocess.run([sys.executable, "-m", "assistant.cli.main", "history", "import", "-"],
                              stdin=zeros.stdout, capture_output=True, timeout=30, cwd=REPO,
                              env={**os.environ, "ASSISTANT_HOME": str(tmp_path), "PYTHONPATH": str(REPO)})
    finally:
        zeros.kill()
        zeros.wait()
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "not a HearthChat history export" in err and "did not expect" not in err
