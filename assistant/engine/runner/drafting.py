"""Speculative decoding inside the runner: a draft proposes, the target checks a batch, rejects roll back.

One generation loop drives both models (generation.py calls `Speculator.step` where it
would decode one token). A round:

1. the drafter proposes up to k tokens after the pending one: a small model of the
   same vocabulary (its own context, whose cache is brought in step with the
   target's first: rejected drafts are taken back, accepted ones decoded), or
   prompt lookup (n-grams of the conversation);
2. the target decodes the pending token and the drafts in one batch, with logits at
   every position (`LoadedModel.decode_all`);
3. each draft is checked in order: greedy, it must be the target's own choice
   (llama.cpp's chain sampled at that position, so the reply is token for token the
   one without drafting); with temperature, the speculative-sampling rule
   (spec_sampling.py) keeps the distribution;
4. the first rejected draft is replaced by the target's token, the cells after the
   last kept token are removed (`llama_memory_seq_rm`), and the round returns the
   verified tokens: all but the last are in the cache, the last is pending.

`DraftController` decides each round's length and pauses drafting when it stops paying.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import llama_cpp.llama_cpp as C

from assistant.engine.runner.draft_control import Costs, DraftController
from assistant.engine.runner.llama_model import DecodeError, LoadedModel, Sampler
from assistant.engine.runner.prompt_lookup import NgramIndex
from assistant.engine.settings import GenerationSettings
from common.errors import UserError

log = logging.getLogger(__name__)

VOCAB_MAX_DIFFERENCE = 128  # as llama.cpp: sizes may differ by padding, never by real tokens
VOCAB_CHECK_FROM = 5  # the first few ids are specials that families number differently (llama.cpp's choice)
_LONG_SYNC = 8  # a catch-up longer than this is the prompt, not a draft step


class DraftRefused(UserError):
    """A draft model that cannot draft for this target: the reply goes on without drafting."""


def check_compatible(target: LoadedModel, draft: LoadedModel, draft_name: str, target_name: str) -> None:
    """Refuse a draft whose vocabulary differs from the target's, as llama.cpp's speculative example does."""
    tv, dv = target.vocab, draft.vocab

    def refuse(why: str) -> DraftRefused:
        return DraftRefused(f"{draft_name} cannot draft for {target_name}: {why}, so its drafts could not be "
                            "checked; replies go on without drafting.")

    if C.llama_vocab_type(tv) != C.llama_vocab_type(dv):
        raise refuse("its tokenizer is of another kind")
    if C.llama_vocab_get_add_bos(tv) != C.llama_vocab_get_add_bos(dv) or (
            C.llama_vocab_get_add_bos(tv) and C.llama_vocab_bos(tv) != C.llama_vocab_bos(dv)):
        raise refuse("it starts a text with another token")
    if C.llama_vocab_eos(tv) != C.llama_vocab_eos(dv):
        raise refuse("it ends a text with another token")
    if abs(target.n_vocab - draft.n_vocab) > VOCAB_MAX_DIFFERENCE:
        raise refuse(f"its vocabulary has {draft.n_vocab:,} tokens against {target.n_vocab:,}")
    for i in range(VOCAB_CHECK_FROM, min(target.n_vocab, draft.n_vocab)):
        if C.llama_vocab_get_text(tv, i) != C.llama_vocab_get_text(dv, i):
            raise refuse(f"token {i} is another word in its vocabulary")
    if not (target.can_roll_back() and draft.can_roll_back()):
        raise refuse("one of them keeps a recurrent state that cannot take back rejected drafts")


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the common prefix of two token lists (slice comparisons run in C: a binary search)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass
class Proposal:
    tokens: list[int] = field(default_factory=list)
    dists: list = field(default_factory=list)  # the draft's distribution for each token (temperature > 0)
    steps: int = 0  # draft-model decodes that count as draft steps
    seconds: float = 0.0  # their time (a long catch-up, the prompt, left out)


class Drafter(Protocol):
    kind: str
    name: str | None

    def begin(self, settings: GenerationSettings, rng) -> None: ...
    def propose(self, kv: list[int], pending: int, k: int, recent: list[int],
                should_stop: Callable[[], bool]) -> Proposal: ...
    def close(self) -> None: ...


class LookupDrafter:
    """Prompt lookup: drafts are what followed the same n-gram earlier in the conversation."""

    kind = "lookup"
    name: str | None = None

    def __init__(self) -> None:
        self.index: NgramIndex | None = None
        self.stochastic = False

    def begin(self, settings: GenerationSettings, rng) -> None:
        self.index = None
        self.stochastic = settings.temperature > 0

    def propose(self, kv, pending, k, recent, should_stop) -> Proposal:
        index = self.index
        if index is None or common_prefix(index.tokens, kv) < len(index.tokens):
            index = self.index = NgramIndex(kv)
        else:
            index.extend(kv[len(index.tokens):])
        index.append(pending)
        tokens = index.draft(k)
        if tokens and min(tokens) < 0:  # an image's placeholders (vision.py) are positions, not tokens to draft
            tokens = tokens[:next(i for i, t in enumerate(tokens) if t < 0)]
        if not self.stochastic:  # greedy compares tokens: no distributions needed
            return Proposal(tokens=tokens)
        from assistant.engine.runner.spec_sampling import point_mass

        return Proposal(tokens=tokens, dists=[point_mass(t) for t in tokens])

    def close(self) -> None:
        self.index = None


class ModelDrafter:
    """A small model of the same vocabulary, in its own context beside the target's."""

    kind = "model"

    def __init__(self, model: LoadedModel, name: str, target_vocab: int) -> None:
        self.model = model
        self.name: str | None = name
        self.target_vocab = target_vocab
        self._greedy = C.llama_sampler_init_greedy()
        self.settings: GenerationSettings | None = None
        self.rng: Any = None  # numpy's Generator, with temperature

    def begin(self, settings: GenerationSettings, rng) -> None:
        self.settings, self.rng = settings, rng

    def _sync(self, context: list[int], should_stop) -> tuple[int, float]:
        """Bring the draft's cache to `context` minus its last token's output; (tokens decoded, seconds)."""
        m = self.model
        t0 = time.perf_counter()
        n_keep = min(common_prefix(m.kv_tokens, context), len(context) - 1)
        todo = len(context) - n_keep
        if todo > _LONG_SYNC:
            m.eval_prompt(context, should_abort=should_stop)  # the prompt: stoppable between micro-batches
        else:
            m.truncate(n_keep)
            m.decode(context[n_keep:])
        return todo, time.perf_counter() - t0

    def propose(self, kv, pending, k, recent, should_stop) -> Proposal:
        m, s = self.model, self.settings
        assert s is not None
        stochastic = s.temperature > 0
        done, sync_seconds = self._sync(kv + [pending], should_stop)
        out = Proposal()
        if done <= _LONG_SYNC:  # a round's catch-up is its first draft step; the prompt is not
            out.steps, out.seconds = 1, sync_seconds
        t0 = time.perf_counter()
        for i in range(k):
            if stochastic:
                from assistant.engine.runner.spec_sampling import chain_distribution

                q = chain_distribution(m.logits(-1), s, recent + out.tokens)
                token = q.sample(self.rng)
                out.dists.append(q)
            else:
                token = C.llama_sampler_sample(self._greedy, m.ctx, -1)
            if token >= self.target_vocab:  # a padding id the target does not have
                if out.dists:
                    out.dists.pop()
                break
            out.tokens.append(token)
            if i == k - 1 or should_stop():
                break
            m.decode_one(token)
            out.steps += 1
        out.seconds += time.perf_counter() - t0
        return out

    def close(self) -> None:
        if self._greedy:
            C.llama_sampler_free(self._greedy)
            self._greedy = None
        self.model.close()


@dataclass
class DraftSetup:
    """What the runner holds while a pair is loaded: the drafter, its settings, and the measured costs."""

    drafter: Drafter
    draft_max: int
    adaptive: bool = True
    costs: Costs = field(default_factory=Costs)

    def describe(self) -> dict:
        return {"kind": self.drafter.kind, "model": self.drafter.name, "draft_max": self.draft_max,
                "adaptive": self.adaptive}

    def memory(self) -> dict:
        """What the draft model adds to the process: its weights, KV cache and compute buffer (llama.cpp's figures)."""
        model = getattr(self.drafter, "model", None)
        if model is None:
            return {}
        return {"weights_bytes": model.weights_bytes(), "kv_bytes": model.buffers.kv,
                "compute_bytes": model.buffers.compute}

    def start(self, target: LoadedModel, sampler: Sampler, settings: GenerationSettings, seed: int,
              should_stop: Callable[[], bool]) -> Speculator:
        controller = DraftController(self.draft_max, self.costs, drafts_cost=self.drafter.kind == "model",
                                     adaptive=self.adaptive)
        return Speculator(self, target, controller, sampler, settings, seed, should_stop)

    def close(self) -> None:
        self.drafter.close()


class Speculator:
    """One reply's drafting: `step(token)` puts the pending token in the target's cache, with the drafts it
    verified after it; see the module's docstring."""

    def __init__(self, setup: DraftSetup, target: LoadedModel, controller: DraftController, sampler: Sampler,
                 settings: GenerationSettings, seed: int, should_stop: Callable[[], bool]) -> None:
        self.setup = setup
        self.target = target
        self.controller = controller
        self.sampler = sampler
        self.settings = settings
        self.should_stop = should_stop
        self.stochastic = settings.temperature > 0
        self.rng: Any = None
        if self.stochastic:
            import numpy as np

            self.rng = np.random.default_rng(seed)
        self.recent: list[int] = []  # the reply's tokens so far: the repetition penalty's window
        self._from_round = False  # the pending token came out of the last round (already in `recent`)
        self._last_start: float | None = None  # when the last step began, and what it yielded
        self._last_yield = (0, False)
        setup.drafter.begin(settings, self.rng)
        if setup.drafter.kind == "model" and target.kv_tokens and min(target.kv_tokens) < 0:
            # An image in the prompt: its positions hold the projector's embeddings, which a draft model of
            # another width cannot read. This reply goes without the draft (prompt lookup still works).
            controller.stop()

    def step(self, token: int, n_emitted: int, room: int) -> list[int]:
        """Decode `token` (emitted, not yet in the cache). Returns the verified tokens that follow it, all but
        the last already in the cache; empty when it decoded `token` alone (the caller samples the next).
        `room`: how many more tokens the reply may emit after this one."""
        t = self.target
        now = time.perf_counter()
        if self._last_start is not None:  # the last step's tokens, emitted by the loop: what they really cost
            tokens, drafted = self._last_yield
            self.controller.realized(now - self._last_start, tokens, drafted=drafted)
        self._last_start = now
        if not self._from_round:
            self.recent.append(token)
        limit = min(room - 1, t.n_ctx - len(t.kv_tokens) - 1)
        k = self.controller.next_k(n_emitted, limit)
        proposal = None
        if k > 0:
            try:
                proposal = self.setup.drafter.propose(t.kv_tokens, token, k, self.recent, self.should_stop)
                self.controller.draft_steps(proposal.seconds, proposal.steps)
            except DecodeError as exc:  # the draft's own trouble must not cost the reply
                log.warning("the draft failed (%s); this reply goes on without it", exc)
                self.controller.stop()
                proposal = None
        if proposal is None or not proposal.tokens or self.should_stop():
            t0 = time.perf_counter()
            t.decode_one(token)
            self.controller.plain_step(time.perf_counter() - t0)
            self._from_round = False
            self._last_yield = (1, False)
            return []
        out = self._verify(token, proposal)
        self._last_yield = (len(out), True)
        return out

    def _verify(self, token: int, proposal: Proposal) -> list[int]:
        t, drafts = self.target, proposal.tokens
        t0 = time.perf_counter()
        t.decode_all([token] + drafts)
        base = len(t.kv_tokens) - len(drafts)  # cells up to and including `token`
        out: list[int] = []
        if self.stochastic:
            out = self._check_sampled(drafts, proposal.dists)
        else:
            for i, d in enumerate(drafts):
                chosen = self.sampler.sample_at(i)  # the chain the reply without drafting samples with
                out.append(chosen)
                if chosen != d:
                    break
            else:
                out.append(self.sampler.sample_at(len(drafts)))
        n_accepted = len(out) - 1
        t.truncate(base + n_accepted)
        self.controller.verified(len(drafts), n_accepted, time.perf_counter() - t0)
        self.recent.extend(out)
        self._from_round = True
        return out

    def _check_sampled(self, drafts: list[int], dists: list) -> list[int]:
        from assistant.engine.runner.spec_sampling import accept_or_correct, chain_distribution

        t, s, rng = self.target, self.settings, self.rng
        out: list[int] = []
        for i, d in enumerate(drafts):
            p = chain_distribution(t.logits(i), s, self.recent + out)
            kept, chosen = accept_or_correct(p, dists[i], d, rng, t.n_vocab)
            self.sampler.accept(chosen)  # llama.cpp's chain sees every token, for its penalties
            out.append(chosen)
            if not kept:
                return out
        bonus = chain_distribution(t.logits(len(drafts)), s, self.recent + out).sample(rng)
        self.sampler.accept(bonus)
        out.append(bonus)
        return out

    def record(self) -> dict:
        c, d = self.controller, self.setup.drafter
        break_even = round(c.break_even(), 3) if c.costs.t_plain else None
        return {"kind": d.kind, "model": d.name, "drafted": c.drafted, "accepted": c.accepted,
                "paused": c.paused, "break_even": break_even}


def load_drafting(target: LoadedModel, request: dict, load: dict) -> tuple[DraftSetup | None, dict | None]:
    """Set up the drafting a load request asks for: (the setup, None), or (None, why not) when the draft
    model cannot be used; the target stays loaded either way and replies go on without drafting."""
    draft_max = max(1, int(request.get("draft_max") or 8))
    adaptive = bool(request.get("adaptive", True))
    if request.get("kind") == "lookup":
        return DraftSetup(LookupDrafter(), draft_max, adaptive), None
    name = str(request.get("name") or request.get("path"))
    target_name = str(load.get("name") or "the model")
    from assistant.engine.runner import llama_runtime as rt

    try:
        if not target.can_roll_back():
            raise DraftRefused(f"{target_name} keeps a recurrent state that cannot take back rejected drafts, so "
                               "it cannot use a draft model; replies go on without drafting.")
        # The draft's cache is of the same type and attention as the target's, and of the same length.
        draft = LoadedModel(request["path"], n_ctx=target.n_ctx, n_threads=target.n_threads,
                            n_gpu_layers=target.n_gpu_layers, n_batch=target.n_batch,
                            kv_cache_type=load.get("kv_cache_type") or "f16",
                            flash_attn=load.get("flash_attn") or "auto",
                            max_checkpoint_bytes=request.get("checkpoint_bytes_max"))
    except rt.ContextSettingsError as exc:
        return None, _refusal(name, f"The draft model {name} cannot be loaded with these settings ({exc}); replies "
                                    "go on without drafting.")
    except rt.LlamaLoadError as exc:
        return None, _refusal(name, f"The draft model {name} could not be loaded ({exc}); replies go on without "
                                    "drafting.")
    except MemoryError:
        return None, _refusal(name, f"The draft model {name} does not fit in the memory the model's process may "
                                    "use; replies go on without drafting.")
    except DraftRefused as exc:
        return None, _refusal(name, str(exc))
    try:
        check_compatible(target, draft, name, target_name)
    except DraftRefused as exc:
        draft.close()
        return None, _refusal(name, str(exc))
    costs = Costs(draft_ratio=draft.weights_bytes() / max(1, target.weights_bytes()))
    log.info("drafting with %s (up to %d tokens a round)", name, draft_max)
    return DraftSetup(ModelDrafter(draft, name, target.n_vocab), draft_max, adaptive, costs=costs), None


def _refusal(name: str | None, sentence: str) -> dict:
    log.warning("%s", sentence)
    return {"kind": "model", "model": name, "error": sentence}
