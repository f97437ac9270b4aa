"""Context checkpoints: window-sized sliding-window caches and recurrent state still reuse a shared prefix,
and what a restored checkpoint computes is what a cold cache computes (runner code, in this process)."""

import numpy as np
import llama_cpp.llama_cpp as C
import pytest

from assistant.engine.runner.llama_model import LoadedModel, Sampler
from assistant.engine.settings import GenerationSettings
from tests.support.hybrid_gguf import write_tiny_gemma3, write_tiny_lfm2

pytestmark = pytest.mark.llama_cpp

TEXT = "the history of the city goes back many centuries and the people who live there tell its story "
GREEDY = GenerationSettings(temperature=0)


@pytest.fixture(scope="module")
def lfm2_path(tmp_path_factory):
    return write_tiny_lfm2(tmp_path_factory.mktemp("lfm2") / "tiny-lfm2.gguf", scale=4.0)


@pytest.fixture(scope="module")
def gemma3_path(tmp_path_factory):
    return write_tiny_gemma3(tmp_path_factory.mktemp("gemma3") / "tiny-gemma3.gguf", sliding_window=128, scale=4.0)


def _load(path, **kwargs) -> LoadedModel:
    kwargs.setdefault("n_batch", 512)
    return LoadedModel(str(path), n_ctx=2048, n_threads=1, n_gpu_layers=0, **kwargs)


def _logits(m: LoadedModel) -> np.ndarray:
    return np.ctypeslib.as_array(C.llama_get_logits_ith(m.ctx, -1), shape=(m.n_vocab,)).copy()


def _greedy(m: LoadedModel, n: int) -> list[int]:
    sampler = Sampler(m, GREEDY, 0)
    try:
        out = []
        for _ in range(n):
            token = sampler.sample()
            out.append(token)
            m.decode_one(token)
        return out
    finally:
        sampler.close()


def _cold(path, tokens, **kwargs) -> tuple[np.ndarray, list[int]]:
    """The same prompt evaluated in a fresh context: logits of its last token and a greedy continuation."""
    m = _load(path, **kwargs)
    try:
        m.eval_prompt(tokens, checkpoints=False)
        return _logits(m), _greedy(m, 8)
    finally:
        m.close()


def _assert_same(logits, tokens, cold_logits, cold_tokens):
    spread = float(cold_logits.max() - cold_logits.min())
    assert float(np.abs(logits - cold_logits).max()) < 1e-3 * spread
    assert tokens == cold_tokens


def test_hybrid_follow_up_turns_reuse_the_prefix_and_compute_what_a_cold_cache_does(lfm2_path):
    m = _load(lfm2_path)
    try:
        assert m.recurrent and m.kv_cache["recurrent"] and m.checkpoints.limit > 0
        prompt = m.tokenize(TEXT * 3, add_bos=True)
        first = m.eval_prompt(prompt)
        assert first.n_cached == 0 and [c.n_tokens for c in m.checkpoints.saved] == [len(prompt) - 4]
        reply = _greedy(m, 8)
        # A follow-up turn: the prompt, the reply, a new message. The state simply goes on.
        follow = prompt + reply + m.tokenize(" and then the people came to live here", add_bos=False)
        second = m.eval_prompt(follow)
        assert second.n_cached == len(prompt) + len(reply) and second.restored is None
        answer = _logits(m), _greedy(m, 8)
        _assert_same(*answer, *_cold(lfm2_path, follow))
        # The reply regenerated (or the template rendering it differently): the recurrent state cannot go
        # back, so the checkpoint 4 tokens before the prompt's end is restored and only those are evaluated.
        again = m.eval_prompt(follow)
        assert again.restored == len(follow) - 4 and again.n_cached == len(follow) - 4
        _assert_same(_logits(m), _greedy(m, 8), *answer)
        # The user edits the first message's end: the newest checkpoint inside the shared prefix is used.
        edited = prompt[:-2] + m.tokenize(" a different ending", add_bos=False)
        third = m.eval_prompt(edited)
        assert third.restored == len(prompt) - 4 and third.n_cached == len(prompt) - 4
        _assert_same(_logits(m), _greedy(m, 8), *_cold(lfm2_path, edited))
        record = m.kv_cache_record()
        assert 0 < record["checkpoints"] <= record["max_checkpoints"] and record["checkpoint_bytes"] == m.checkpoints.bytes
    finally:
        m.close()


def test_a_wrong_recurrent_state_would_show(lfm2_path):
    """The comparison above can fail: continuing from the state of another prefix gives other logits."""
    m = _load(lfm2_path)
    try:
        prompt = m.tokenize(TEXT * 3, add_bos=True)
        m.eval_prompt(prompt)
        m.decode(prompt[-5:])  # the last tokens again, on a state that already holds them
        stale = _logits(m)
    finally:
        m.close()
    cold, _ = _cold(lfm2_path, prompt)
    assert float(np.abs(stale - cold).max()) > 0.05 * float(cold.max() - cold.min())


def test_hybrid_without_a_checkpoint_starts_over_rather_than_misuse_the_state(lfm2_path):
    m = _load(lfm2_path, max_checkpoints=0)
    try:
        prompt = m.tokenize(TEXT * 2, add_bos=True)
        m.eval_prompt(prompt)
        _greedy(m, 4)
        again = m.eval_prompt(prompt)
        assert again.n_cached == 0 and not m.checkpoints.saved
    finally:
        m.close()


def test_sliding_window_caches_are_window_sized_and_a_restored_checkpoint_matches_a_cold_cache(gemma3_path):
    # A micro-batch of 64 and a window of 128: the sliding-window cache holds a few hundred cells, so after
    # a long reply it no longer holds what going back into the prompt needs.
    m = _load(gemma3_path, n_batch=64)
    full = _load(gemma3_path, n_batch=64, swa_full=True)
    try:
        assert m.window and m.kv_cache["swa"] == "window" and full.kv_cache["swa"] == "full"
        assert m.buffers.kv < full.buffers.kv / 2
        prompt = m.tokenize(TEXT * 20, add_bos=True)[:400]
        m.eval_prompt(prompt)
        assert [c.n_tokens for c in m.checkpoints.saved] == [400 - 4 - 64, 400 - 4]
        _greedy(m, 300)
        assert C.llama_memory_seq_pos_min(m.memory, 0) > 340 - m.n_swa  # the window has moved on
        edited = prompt[:340] + m.tokenize(" a different ending for the story", add_bos=False)
        resumed = m.eval_prompt(edited)
        assert resumed.restored == 400 - 4 - 64 and resumed.n_cached == 332
        _assert_same(_logits(m), _greedy(m, 8), *_cold(gemma3_path, edited, n_batch=64))
    finally:
        m.close()
        full.close()


def test_a_sliding_window_cache_cut_back_past_its_window_would_show(gemma3_path):
    """Cutting the window-sized cache back without a checkpoint computes something else: the guard matters."""
    m = _load(gemma3_path, n_batch=64)
    try:
        prompt = m.tokenize(TEXT * 20, add_bos=True)[:400]
        m.eval_prompt(prompt)
        _greedy(m, 300)
        edited = prompt[:340] + m.tokenize(" a different ending for the story", add_bos=False)
        assert C.llama_memory_seq_rm(m.memory, 0, 340, -1)  # llama.cpp allows it, and forgets nothing it lacks
        m.decode(edited[340:])
        wrong = _logits(m)
    finally:
        m.close()
    cold, _ = _cold(gemma3_path, edited, n_batch=64)
    assert float(np.abs(wrong - cold).max()) > 0.05 * float(cold.max() - cold.min())


def test_sliding_window_without_checkpoints_starts_over_past_the_window(gemma3_path):
    m = _load(gemma3_path, n_batch=64, max_checkpoints=0)
    try:
        prompt = m.tokenize(TEXT * 20, add_bos=True)[:400]
        m.eval_prompt(prompt)
        _greedy(m, 300)
        edited = prompt[:340] + m.tokenize(" another ending", add_bos=False)
        assert m.eval_prompt(edited).n_cached == 0
    finally:
        m.close()


def test_checkpoints_are_bounded_in_number_and_bytes(lfm2_path):
    m = _load(lfm2_path, max_checkpoints=2)
    try:
        tokens = m.tokenize(TEXT * 10, add_bos=True)
        for end in (60, 90, 120, 150):  # each prompt extends the last: checkpoints pile up, the oldest go
            m.eval_prompt(tokens[:end])
        assert [c.n_tokens for c in m.checkpoints.saved] == [116, 146]
        size = m.checkpoints.saved[0].size
        m.checkpoints.max_bytes = size  # room for one
        m.eval_prompt(tokens[:180])
        assert [c.n_tokens for c in m.checkpoints.saved] == [176] and m.checkpoints.bytes <= size
        m.reset_cache()
        assert not m.checkpoints.saved and m.kv_cache_record()["checkpoint_bytes"] == 0
    finally:
        m.close()


def test_a_plain_kv_cache_keeps_no_checkpoints(tiny_model_path):
    m = _load(tiny_model_path)
    try:
        assert not m.window and not m.recurrent and m.checkpoints.limit == 0
        m.eval_prompt(m.tokenize(TEXT * 2, add_bos=True))
        assert not m.checkpoints.saved
    finally:
        m.close()
