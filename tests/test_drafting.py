"""Speculative decoding (issue 23) on the real llama.cpp: draft models and prompt lookup in the runner.

The pairs come from tests/support/draft_pairs.py: a draft that always agrees (the target is the draft plus
layers that change nothing), one that never does (the target's output layer negated), one in between
(noise on it), and a model drafting for itself.
"""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from assistant.engine import GenerationSettings, LoadSettings, LocalEngine
from tests.support.draft_pairs import write_agreeing_pair, write_never_draft, write_noisy_draft
from tests.support.tiny_gguf import write_tiny_llama

pytestmark = pytest.mark.llama_cpp

SHAPE = dict(n_embd=64, n_heads=4, n_kv_heads=2, n_ff=128, n_ctx=2048)
PROMPT = "hello the world and the people of the sea"
GREEDY = GenerationSettings(max_tokens=48, temperature=0.0, ignore_eos=True, stop_on_repetition=False)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    target, agrees = write_agreeing_pair(folder, n_layers=2, extra_layers=6, **SHAPE)
    other = write_tiny_llama(folder / "target.gguf", n_layers=2, seed=5, **SHAPE)
    return {
        "agrees": (target, agrees),
        "never": (other, write_never_draft(folder / "never.gguf", seed=5, n_layers=2, **SHAPE)),
        "between": (other, write_noisy_draft(folder / "between.gguf", seed=5, noise=0.1, n_layers=2, **SHAPE)),
        "self": (other, other),
    }


def _reply(path, settings: GenerationSettings, prompt: str = PROMPT, **load) -> tuple:
    engine = LocalEngine()
    try:
        summary = engine.load(str(path), LoadSettings(n_ctx=load.pop("n_ctx", 512), n_threads=1, **load))
        response = engine.complete(prompt, settings)
        response.text()
        return response.stats, summary
    finally:
        engine.close()


@pytest.mark.parametrize("kind", ["agrees", "never", "between", "self"])
def test_a_greedy_reply_is_token_for_token_the_same_with_a_draft(pairs, kind):
    target, draft = pairs[kind]
    plain, _ = _reply(target, GREEDY)
    drafted, summary = _reply(target, GREEDY, draft=str(draft), draft_always=True)
    assert drafted.reply == plain.reply and drafted.completion_tokens == plain.completion_tokens == 48
    assert plain.draft is None
    d = drafted.draft
    assert d["kind"] == "model" and d["model"] == draft.stem and summary.draft["model"] == draft.stem
    assert 0 < d["drafted"] and 0 <= d["accepted"] <= d["drafted"]
    assert d["accepted"] <= drafted.completion_tokens - 2  # the first token and each round's own are the target's
    if kind in ("agrees", "self"):
        assert d["accepted"] == d["drafted"]
        # Every round of 8 drafts yields 9 tokens: only the first two steps and the tail were not drafted.
        assert d["accepted"] >= drafted.completion_tokens - 48 // 9 - 3
    elif kind == "never":
        assert d["accepted"] == 0
    else:
        assert 0 < d["accepted"] < d["drafted"]
    # The draft's weights and KV cache are in the memory figures.
    assert drafted.memory.draft_bytes and drafted.memory.draft_bytes >= summary.draft["weights_bytes"] > 0
    assert summary.draft["kv_bytes"] > 0 and plain.memory.draft_bytes is None


def test_a_draft_that_never_agrees_pauses_itself(pairs):
    target, draft = pairs["never"]
    plain, _ = _reply(target, GREEDY)
    drafted, _ = _reply(target, GREEDY, draft=str(draft))
    assert drafted.reply == plain.reply
    d = drafted.draft
    assert d["paused"] and d["accepted"] == 0
    assert d["drafted"] <= 3 * 8  # a few rounds, then it stopped paying for drafts nobody keeps


def test_prompt_lookup_accepts_drafts_when_the_reply_copies(starter_model_path):
    text = ("The lighthouse keeper climbed the stairs every evening at six. He lit the lamp, wound the clock, "
            "and wrote the weather in a small blue book.")
    messages = [{"role": "user", "content": "Repeat this text exactly, word for word:\n\n" + text}]
    settings = GenerationSettings(max_tokens=40, temperature=0.0)
    replies = []
    for draft in (None, "lookup"):
        engine = LocalEngine()
        try:
            engine.load(str(starter_model_path), LoadSettings(n_ctx=512, n_threads=1, draft=draft,
                                                              draft_always=draft is not None))
            response = engine.chat(messages, settings)
            response.text()
            replies.append(response.stats)
        finally:
            engine.close()
    plain, looked_up = replies
    assert looked_up.reply == plain.reply and "lighthouse keeper climbed" in plain.reply
    d = looked_up.draft
    assert d["kind"] == "lookup" and d["model"] is None
    assert d["drafted"] >= 20 and d["accepted"] >= 0.7 * d["drafted"]


def test_prompt_lookup_pauses_itself_on_random_text(tmp_path):
    path = write_tiny_llama(tmp_path / "v355.gguf", vocab=355, seed=3, n_ctx=2048)
    rnd = random.Random(0)
    text = "".join(rnd.choice("abcdefgh ") for _ in range(400))
    settings = GenerationSettings(max_tokens=200, temperature=1.5, top_k=3, top_p=1.0, min_p=0.0, seed=2,
                                  ignore_eos=True, stop_on_repetition=False)
    stats, _ = _reply(path, settings, prompt=text, draft="lookup", n_ctx=1024)
    d = stats.draft
    assert d["paused"] and d["drafted"] <= 4 * 8 and stats.completion_tokens == 200


def test_cancel_mid_draft_stops_the_reply_and_the_next_one_is_right(pairs):
    target, draft = pairs["agrees"]
    long = GenerationSettings(max_tokens=400, temperature=0.0, ignore_eos=True, stop_on_repetition=False)
    engine = LocalEngine()
    try:
        engine.load(str(target), LoadSettings(n_ctx=1024, n_threads=1, draft=str(draft), draft_always=True))
        response = engine.complete(PROMPT, long)
        for i, _ in enumerate(response):
            if i == 3:
                threading.Thread(target=response.cancel).start()
        stats = response.stats
        assert stats.stop_reason == "stopped" and stats.completion_tokens < 400
        assert stats.draft["drafted"] > 0
        # The caches were left consistent: the same request again gives the reply a fresh process gives.
        again = engine.complete(PROMPT, GREEDY)
        again.text()
    finally:
        engine.close()
    fresh, _ = _reply(target, GREEDY)
    assert again.stats.reply == fresh.reply and again.stats.draft["accepted"] > 0


def test_the_context_filling_mid_draft_ends_where_it_would_without_drafting(pairs):
    target, draft = pairs["agrees"]
    settings = GenerationSettings(max_tokens=0, temperature=0.0, ignore_eos=True, stop_on_repetition=False)
    plain, _ = _reply(target, settings, n_ctx=96)
    drafted, _ = _reply(target, settings, n_ctx=96, draft=str(draft), draft_always=True)
    assert plain.stop_reason == drafted.stop_reason == "context_full"
    assert drafted.reply == plain.reply and drafted.completion_tokens == plain.completion_tokens
    assert drafted.context["used_tokens"] <= drafted.n_ctx and drafted.draft["accepted"] > 0


@pytest.mark.parametrize("kind", ["llama_cpp_refuses", "other_vocabulary", "not_a_model", "unknown_name"])
def test_a_draft_that_cannot_be_loaded_leaves_the_model_answering_with_a_sentence(tmp_path, tiny_model_path, kind):
    if kind == "llama_cpp_refuses":  # a qwen3 header over llama tensors: llama.cpp misses tensors it needs
        draft = str(write_tiny_llama(tmp_path / "broken.gguf", architecture="qwen3"))
        words = "could not be loaded"
    elif kind == "other_vocabulary":
        draft = str(write_tiny_llama(tmp_path / "other.gguf", vocab=600))
        words = "its vocabulary has 600 tokens"
    elif kind == "not_a_model":
        (tmp_path / "junk.gguf").write_bytes(b"GGUF" + bytes(100))
        draft = str(tmp_path / "junk.gguf")
        words = "was left out"
    else:
        draft, words = "no-such-model", "no installed model is named"
    stats, summary = _reply(tiny_model_path, GenerationSettings(max_tokens=8, temperature=0.0), draft=draft)
    assert stats.stop_reason in ("length", "eos") and stats.completion_tokens >= 1
    sentence = summary.draft["error"]
    assert words in sentence and sentence.endswith("replies go on without drafting.") and "\n" not in sentence
    assert stats.draft["error"] == sentence and stats.draft["drafted"] == 0
    assert stats.memory.draft_bytes is None


# --- With temperature: the distribution is kept (in the runner's own modules, no process boundary)

CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46, 7: 24.32, 8: 26.12, 9: 27.88}


def _chi2_two_samples(a: dict[int, int], b: dict[int, int]) -> tuple[float, int]:
    """Pearson's chi-square test of homogeneity of two samples of tokens; (statistic, degrees of freedom)."""
    cells = sorted(set(a) | set(b))
    na, nb = sum(a.values()), sum(b.values())
    stat = 0.0
    for c in cells:
        total = a.get(c, 0) + b.get(c, 0)
        for count, n in ((a.get(c, 0), na), (b.get(c, 0), nb)):
            expected = total * n / (na + nb)
            stat += (count - expected) ** 2 / expected
    return stat, len(cells) - 1


def test_sampling_with_a_draft_keeps_the_token_distribution(pairs):
    """The first token of a speculative round, over many seeds, against llama.cpp's own sampler at the same
    position: the same distribution (fixed seeds: the outcome never changes between runs)."""
    import llama_cpp.llama_cpp as C

    from assistant.engine.runner.draft_control import Costs
    from assistant.engine.runner.drafting import DraftSetup, ModelDrafter
    from assistant.engine.runner.llama_model import LoadedModel, Sampler

    target_path, _ = pairs["between"]
    folder = target_path.parent
    draft_path = write_noisy_draft(folder / "far.gguf", seed=5, noise=0.5, n_layers=2, **SHAPE)  # q far from p
    settings = GenerationSettings(temperature=1.3, top_k=6, top_p=0.98, min_p=0.0, repeat_penalty=1.1, seed=0)
    target = LoadedModel(str(target_path), n_ctx=256, n_threads=1, n_gpu_layers=0, n_batch=64)
    draft = LoadedModel(str(draft_path), n_ctx=256, n_threads=1, n_gpu_layers=0, n_batch=64)
    try:
        prompt = target.tokenize(PROMPT, add_bos=True)
        pending = prompt.pop()
        target.eval_prompt(prompt)
        base = len(target.kv_tokens)
        n = 2000
        # llama.cpp's chain, sampling the position after `pending` n times (a fresh chain each time: sampling
        # adds the token to the chain's penalty window).
        target.decode_one(pending)
        ours_expected: dict[int, int] = {}
        for seed in range(n):
            reference = Sampler(target, settings, seed=10_000 + seed)
            C.llama_sampler_accept(reference.ptr, pending)  # the penalty window holds the pending token
            token = reference.sample()
            ours_expected[token] = ours_expected.get(token, 0) + 1
            reference.close()
        target.truncate(base)
        # The speculative round's first token, n times from the same state with a fresh seed each time.
        setup = DraftSetup(ModelDrafter(draft, "far", target.n_vocab), draft_max=3, adaptive=False,
                           costs=Costs(t_plain=1.0))
        got: dict[int, int] = {}
        accepted = 0
        for seed in range(n):
            sampler = Sampler(target, settings, seed=seed)
            spec = setup.start(target, sampler, settings, seed, lambda: False)
            out = spec.step(pending, 1, 100)
            assert out, "the round drafted"
            got[out[0]] = got.get(out[0], 0) + 1
            accepted += spec.controller.accepted
            sampler.close()
            target.truncate(base)
        stat, dof = _chi2_two_samples(ours_expected, got)
        assert 1 <= dof <= 9 and stat < CHI2_999[dof], (stat, dof, ours_expected, got)
        assert 0 < accepted < 3 * n  # drafts were both kept and rejected: both branches of the rule ran
    finally:
        target.close()
        draft.close()


@pytest.mark.parametrize("case", ["model", "point_mass"])
def test_the_acceptance_rule_gives_tokens_distributed_as_the_target(case):
    from assistant.engine.runner.spec_sampling import Distribution, accept_or_correct, point_mass

    rng = np.random.default_rng(7)
    p = Distribution(np.array([0, 1, 2, 3, 4]), np.array([0.4, 0.25, 0.2, 0.1, 0.05]))
    q_model = Distribution(np.array([1, 2, 3, 5]), np.array([0.5, 0.1, 0.3, 0.1]))  # overlaps p, not all of it
    counts = np.zeros(6)
    n = 20000
    for _ in range(n):
        if case == "model":
            drafted = q_model.sample(rng)
            q = q_model
        else:
            drafted = 2  # prompt lookup always proposes what followed before
            q = point_mass(drafted)
        _, token = accept_or_correct(p, q, drafted, rng, 6)
        counts[token] += 1
    expected = np.array([0.4, 0.25, 0.2, 0.1, 0.05]) * n
    assert counts[5] == 0  # never a token the target gives no probability
    stat = float(((counts[:5] - expected) ** 2 / expected).sum())
    assert stat < CHI2_999[4], (stat, counts)
