"""One loaded model and its context: tokens in, tokens out, KV cache bookkeeping.

`LoadedModel` keeps a list of the tokens that sit in the KV cache, so a new
prompt only evaluates what differs from the last one (`eval_prompt`). Where part
of the cache cannot be rolled back (window-sized sliding-window caches, recurrent
state) it resumes from a context checkpoint (`checkpoints.Checkpoints`). It is not
thread-safe: the Engine serialises access to it.
"""

import ctypes
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import llama_cpp.llama_cpp as C

from assistant.engine.grammar import grammar_problem
from assistant.engine.runner import llama_runtime as rt
from assistant.engine.runner.checkpoints import DEFAULT_LIMIT, Checkpoints


@dataclass
class PromptEval:
    n_prompt: int  # tokens in the prompt
    n_cached: int  # of which were already in the KV cache
    restored: int | None = None  # resumed from the checkpoint after this many tokens
    images_encoded: int = 0  # images the projector encoded for this prompt (the others were cached)
    encode_ms: float = 0.0  # the time those encodes took


class DecodeError(RuntimeError):
    pass


class GrammarError(ValueError):
    """A GBNF grammar llama.cpp refused."""


class Cancelled(Exception):
    """The app asked to stop while llama.cpp was evaluating a prompt."""


_ABORTED = 2  # llama_decode's return code when the abort callback said stop


class LoadedModel:
    def __init__(self, path: str, *, n_ctx: int, n_threads: int, n_gpu_layers: int, n_batch: int,
                 kv_cache_type: str = "f16", flash_attn: str = "auto", swa_full: bool = False,
                 max_checkpoints: int = DEFAULT_LIMIT, max_checkpoint_bytes: int | None = None):
        mark = rt.log_mark()
        self.model = rt.load_model(path, n_gpu_layers)
        context_mark = rt.log_mark()
        try:
            self.ctx = rt.new_context(self.model, n_ctx=n_ctx, n_batch=n_batch, n_threads=n_threads,
                                      kv_cache_type=kv_cache_type, flash_attn=flash_attn, swa_full=swa_full)
        except rt.LlamaLoadError as exc:
            rt.free(model=self.model)
            reason = rt.context_error(rt.log_since(context_mark))
            raise (rt.ContextSettingsError(reason) if reason else exc) from None
        except Exception:
            rt.free(model=self.model)
            raise
        self.buffers = rt.parse_buffer_sizes(rt.log_since(mark))
        self.path = path
        self.n_threads = n_threads
        self.n_gpu_layers = n_gpu_layers
        # llama.cpp clamps n_batch to n_ctx; a larger batch would trip a GGML_ASSERT (abort).
        self.n_batch = C.llama_n_batch(self.ctx)
        self.vocab = C.llama_model_get_vocab(self.model)
        self.n_ctx = C.llama_n_ctx(self.ctx)
        self.n_vocab = C.llama_vocab_n_tokens(self.vocab)
        self.memory = C.llama_get_memory(self.ctx)
        self.projector: Any = None  # a vision.Projector when the model sees images
        self.n_ubatch = C.llama_n_ubatch(self.ctx)
        self.n_swa = int(C.llama_model_n_swa(self.model))
        self.window = self.n_swa > 0 and not swa_full  # sliding-window layers keep only their window
        self.recurrent = bool(C.llama_model_is_recurrent(self.model) or C.llama_model_is_hybrid(self.model))
        # Only caches that cannot be cut back at any position need checkpoints; a plain KV cache never pays for them.
        self.checkpoints = Checkpoints(self.ctx, max_checkpoints if (self.window or self.recurrent) else 0,
                                       max_checkpoint_bytes)
        self.kv_cache = {"type": kv_cache_type, "flash_attn": rt.flash_attn_used(rt.log_since(context_mark)),
                         "flash_attn_setting": flash_attn,
                         "swa": ("window" if self.window else "full") if self.n_swa > 0 else None,
                         "recurrent": self.recurrent}
        # What the KV cache holds, position by position; an image's positions hold its placeholders (vision.py).
        self.kv_tokens: list[int] = []
        self._piece_buf = ctypes.create_string_buffer(256)
        self._pieces: dict[int, bytes] = {}  # token -> its bytes (the vocabulary never changes)
        self._eog: dict[int, bool] = {}  # token -> ends a turn
        self._one = (C.llama_token * 1)()
        self._batch: Any = None  # the verify batch (speculative decoding), made on first use
        self._batch_cap = 0

    # --- Metadata
    def weights_bytes(self) -> int:
        return int(C.llama_model_size(self.model))

    def n_params(self) -> int:
        return int(C.llama_model_n_params(self.model))

    def n_ctx_train(self) -> int:
        return int(C.llama_model_n_ctx_train(self.model))

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1024)
        n = C.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace") if n >= 0 else None

    def chat_template(self) -> str | None:
        raw = C.llama_model_chat_template(self.model, None)
        return raw.decode("utf-8", errors="replace") if raw else None

    def token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return C.llama_vocab_get_text(self.vocab, token).decode("utf-8", errors="replace")

    def bos_eos_text(self) -> tuple[str, str]:
        return self.token_text(C.llama_vocab_bos(self.vocab)), self.token_text(C.llama_vocab_eos(self.vocab))

    # --- Tokens
    def tokenize(self, text: str, add_bos: bool) -> list[int]:
        data = text.encode("utf-8")
        n_max = len(data) + 16
        buf = (C.llama_token * n_max)()
        n = C.llama_tokenize(self.vocab, data, len(data), buf, n_max, add_bos, True)
        if n < 0:  # buffer too small: llama.cpp says how much it needs
            n_max = -n
            buf = (C.llama_token * n_max)()
            n = C.llama_tokenize(self.vocab, data, len(data), buf, n_max, add_bos, True)
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        """The bytes one token stands for; control tokens render as nothing. Remembered per token:
        a reply reuses a few thousand tokens, and a dict look-up is cheaper than a ctypes call."""
        known = self._pieces.get(token)
        if known is not None:
            return known
        n = C.llama_token_to_piece(self.vocab, token, self._piece_buf, len(self._piece_buf), 0, False)
        if n < 0:
            self._piece_buf = ctypes.create_string_buffer(-n)
            n = C.llama_token_to_piece(self.vocab, token, self._piece_buf, len(self._piece_buf), 0, False)
        piece = self._piece_buf.raw[:n]
        self._pieces[token] = piece
        return piece

    def marker_pieces(self, markers) -> dict[int, bytes]:
        """Marker strings that are one token here (a thinking format's delimiters), as token -> its text.
        Special tokens render as nothing through `piece`; these must reach the thinking parser."""
        out: dict[int, bytes] = {}
        for marker in markers:
            tokens = self.tokenize(marker, add_bos=False)
            if len(tokens) == 1:
                n = C.llama_token_to_piece(self.vocab, tokens[0], self._piece_buf, len(self._piece_buf), 0, True)
                if 0 < n <= len(self._piece_buf):
                    out[tokens[0]] = self._piece_buf.raw[:n]
        return out

    def stop_tokens(self, stop_strings: list[str]) -> set[int]:
        """Stop strings that are one control token (e.g. <end_of_turn>): such tokens
        render as no text, so a text match would never see them."""
        ids = set()
        for stop in stop_strings:
            tokens = self.tokenize(stop.strip(), add_bos=False)
            if len(tokens) == 1:
                ids.add(tokens[0])
        return ids

    def is_eog(self, token: int) -> bool:
        known = self._eog.get(token)
        if known is None:
            known = self._eog[token] = bool(C.llama_vocab_is_eog(self.vocab, token))
        return known

    # --- Evaluation
    def eval_prompt(self, tokens: list[int], should_abort=None, *, checkpoints: bool = True,
                    checkpoint_at: int | None = None, images=None) -> PromptEval:
        """Bring the KV cache to `tokens`, evaluating only what is not cached.

        `should_abort()` is asked between llama.cpp's micro-batches (its abort callback), so
        a long prompt stops within a fraction of a second of a cancel; raises Cancelled then.
        `checkpoints` False evaluates without saving any (a benchmark of llama.cpp's own speed).
        `checkpoint_at`: one more position to save a checkpoint at, where the next turn's prompt is
        known to part from this one (a reasoning model's reply, rendered back without its thinking).
        `images`: the prompt's image spans by start index (vision.PromptChunks.spans), whose
        placeholder ids in `tokens` the projector evaluates, each whole.
        """
        if not tokens:  # llama.cpp aborts the process on an empty batch
            raise DecodeError("there is nothing to evaluate (an empty prompt)")
        shared = 0
        for a, b in zip(self.kv_tokens, tokens):
            if a != b:
                break
            shared += 1
        n_keep = min(shared, len(tokens) - 1)  # the last token must be evaluated for its logits
        images = images or {}
        for span in images.values():
            if span.start < n_keep < span.start + span.n_pos:
                n_keep = span.start  # an image is evaluated whole or not at all
        restored = None
        if n_keep < len(self.kv_tokens):
            n_keep, restored = self._cut_back(n_keep)
        self.checkpoints.forget_after(shared)
        saves = self.checkpoints.points(n_keep, len(tokens), self.n_ubatch) if checkpoints else set()
        if checkpoints and self.checkpoints.limit > 0 and checkpoint_at is not None \
                and n_keep < checkpoint_at < len(tokens):
            saves = {*saves, checkpoint_at}
        # An image's positions are evaluated in one go: no batch end or checkpoint falls inside one.
        inside = {p for span in images.values() for p in range(span.start + 1, span.start + span.n_pos)}
        saves = {p for p in saves if p not in inside}
        edges = {p for span in images.values() for p in (span.start, span.start + span.n_pos) if p > n_keep}
        ends = sorted({*range(n_keep + self.n_batch, len(tokens), self.n_batch), *saves, *edges, len(tokens)}
                      - inside)
        result = PromptEval(n_prompt=len(tokens), n_cached=n_keep, restored=restored)
        start = n_keep
        with self._abort_callback(should_abort):
            for end in ends:
                if should_abort is not None and should_abort():
                    raise Cancelled()
                if start in saves:
                    self.checkpoints.save(start)
                if start in images:
                    result.encode_ms += self._eval_image(images[start], tokens[start:end], should_abort)
                    result.images_encoded += 1
                else:
                    self.decode(tokens[start:end])
                start = end
        result.encode_ms = round(result.encode_ms, 2)
        return result

    def _eval_image(self, span, placeholders: list[int], should_abort) -> float:
        """Encode one image and decode it into the cache at the next position; the encode's milliseconds."""
        if self.projector is None:
            raise DecodeError("the prompt holds an image but no image projector is loaded")
        rc, encode_ms = self.projector.evaluate(span, self.ctx, len(self.kv_tokens), self.n_batch)
        if rc != 0:
            C.llama_memory_clear(self.memory, True)  # the cache may hold part of the image: forget it
            self.kv_tokens.clear()
            self.checkpoints.clear()
            if should_abort is not None and should_abort():
                raise Cancelled()
            raise DecodeError(f"the image projector could not encode or decode an image (error {rc})")
        self.kv_tokens.extend(placeholders)
        return encode_ms

    def _cut_back(self, n_keep: int) -> tuple[int, int | None]:
        """Drop the cache past its first `n_keep` tokens. Returns (tokens kept, the checkpoint resumed
        from or None): fewer than `n_keep` where part of the cache cannot go back that far."""
        window_holds = not self.window or (
            C.llama_memory_seq_pos_min(self.memory, 0) <= max(0, n_keep - self.n_swa))
        # A recurrent state refuses a partial cut (llama.cpp leaves it untouched then).
        if window_holds and C.llama_memory_seq_rm(self.memory, 0, n_keep, -1):
            del self.kv_tokens[n_keep:]
            return n_keep, None
        restored = self.checkpoints.restore(n_keep)
        if restored is not None and C.llama_memory_seq_rm(self.memory, 0, restored, -1):
            del self.kv_tokens[restored:]
            return restored, restored
        # Nothing to resume from: start from scratch rather than misuse the cache.
        C.llama_memory_clear(self.memory, True)
        self.kv_tokens.clear()
        return 0, None

    @contextmanager
    def _abort_callback(self, should_abort):
        """Install `should_abort` as llama.cpp's abort callback for the duration (prompt evaluation only:
        it is called once per graph node, a cost generation, one token at a time, need not pay)."""
        if should_abort is None:
            yield
            return

        def callback(_data) -> bool:
            try:
                return bool(should_abort())
            except Exception:  # never raise into C
                return False

        c_callback = C.ggml_abort_callback(callback)  # kept alive by this frame while installed
        C.llama_set_abort_callback(self.ctx, c_callback, None)
        try:
            yield
        finally:
            C.llama_set_abort_callback(self.ctx, C.ggml_abort_callback(), None)

    def decode(self, tokens: list[int]) -> None:
        arr = (C.llama_token * len(tokens))(*tokens)
        self._check(C.llama_decode(self.ctx, C.llama_batch_get_one(arr, len(tokens))))
        self.kv_tokens.extend(tokens)

    def decode_one(self, token: int) -> None:
        """The generation step: one token through a reused buffer, as tight as the
        benchmark's native loop (no per-token allocation)."""
        self._one[0] = token
        self._check(C.llama_decode(self.ctx, C.llama_batch_get_one(self._one, 1)))
        self.kv_tokens.append(token)

    def _check(self, rc: int) -> None:
        if rc != 0:
            # The cache may now hold part of the batch; forget it rather than guess.
            C.llama_memory_clear(self.memory, True)
            self.kv_tokens.clear()
            self.checkpoints.clear()
            if rc == _ABORTED:
                raise Cancelled()
            raise DecodeError(f"llama_decode returned {rc}")

    def reset_cache(self) -> None:
        C.llama_memory_clear(self.memory, True)
        self.kv_tokens.clear()
        self.checkpoints.clear()

    def kv_cache_record(self) -> dict:
        """The cache as allocated and its checkpoints now, for the statistics record."""
        return {**self.kv_cache, **self.checkpoints.record()}

    # --- Speculative decoding: a batch with logits at every position, and taking tokens back
    def decode_all(self, tokens: list[int]) -> None:
        """Decode `tokens` after the cache with logits for every one of them (a verify batch):
        `logits(i)` is then the distribution after tokens[i]."""
        n = len(tokens)
        if n > self._batch_cap:
            if self._batch is not None:
                C.llama_batch_free(self._batch)
            self._batch, self._batch_cap = C.llama_batch_init(n, 0, 1), n
        b = self._batch
        pos0 = len(self.kv_tokens)
        for i, token in enumerate(tokens):
            b.token[i] = token
            b.pos[i] = pos0 + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = 1
        b.n_tokens = n
        self._check(C.llama_decode(self.ctx, b))
        self.kv_tokens.extend(tokens)

    def logits(self, idx: int = -1):
        """The logits after the output at `idx` of the last batch, as a numpy view (valid until the next decode)."""
        import numpy as np

        return np.ctypeslib.as_array(C.llama_get_logits_ith(self.ctx, idx), shape=(self.n_vocab,))

    def truncate(self, n: int) -> None:
        """Forget everything in the cache after the first `n` tokens (rejected drafts)."""
        if n >= len(self.kv_tokens):
            return
        # A window-sized sliding-window cache takes back its newest cells too: the cells a verify batch
        # overwrote were outside the window of every later token already.
        if not C.llama_memory_seq_rm(self.memory, 0, n, -1):
            self.reset_cache()
            raise DecodeError("the model's cache cannot take back drafted tokens")
        del self.kv_tokens[n:]
        self.checkpoints.forget_after(n)

    def can_roll_back(self) -> bool:
        """Whether the cache can drop its last tokens: not so for recurrent state (Mamba, hybrids)."""
        return not self.recurrent

    def close(self) -> None:
        if self._batch is not None:
            C.llama_batch_free(self._batch)
            self._batch = None
        if self.projector is not None:
            self.projector.close()
            self.projector = None
        self.checkpoints.clear()
        rt.free(model=self.model, ctx=self.ctx)
        self.model = self.ctx = None


class Sampler:
    """llama.cpp's sampler chain, built from GenerationSettings."""

    def __init__(self, model: LoadedModel, settings, seed: int):
        self.ptr = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
        add = lambda s: C.llama_sampler_chain_add(self.ptr, s)  # noqa: E731
        grammar = getattr(settings, "grammar", None)
        if grammar:
            problem = grammar_problem(grammar)
            if problem:
                self.close()
                raise GrammarError(problem)
            # First in the chain: the others then choose among the tokens the grammar allows.
            g = C.llama_sampler_init_grammar(model.vocab, grammar.encode("utf-8"), b"root")
            if not g:
                self.close()
                raise GrammarError("The grammar cannot be used: llama.cpp could not parse it (its log says where).")
            add(g)
        if settings.repeat_penalty != 1.0:
            add(C.llama_sampler_init_penalties(model.n_vocab, settings.repeat_last_n, settings.repeat_penalty, 0.0, 0.0))
        if settings.temperature <= 0:
            add(C.llama_sampler_init_greedy())
        else:
            if settings.top_k > 0:
                add(C.llama_sampler_init_top_k(settings.top_k))
            if settings.top_p < 1.0:
                add(C.llama_sampler_init_top_p(settings.top_p, 1))
            if settings.min_p > 0:
                add(C.llama_sampler_init_min_p(settings.min_p, 1))
            add(C.llama_sampler_init_temp(settings.temperature))
            add(C.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        self.ctx = model.ctx

    def sample(self) -> int:
        return C.llama_sampler_sample(self.ptr, self.ctx, -1)

    def sample_at(self, idx: int) -> int:
        """Sample from the logits of output `idx` of the last batch (a verify batch's positions)."""
        return C.llama_sampler_sample(self.ptr, self.ctx, idx)

    def accept(self, token: int) -> None:
        """Tell the chain a token chosen outside it (speculative sampling), so its penalties stay in step."""
        C.llama_sampler_accept(self.ptr, token)

    def close(self) -> None:
        if self.ptr:
            C.llama_sampler_free(self.ptr)
            self.ptr = None
