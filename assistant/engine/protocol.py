"""The messages between the app and its runner process, and the timings they keep.

Messages are tuples sent over a multiprocessing Pipe (pickled, length-framed).
App -> runner:
    ("load", request)                    -> ("loaded", summary) | ("error", sentence)
    ("chat", id, messages, settings)     -> ("rendered", n_prompt_tokens), ("text", text, n_tokens, kind)...,
    ("complete", id, prompt, settings)      ("done", record)   | ("error", sentence)
    ("cancel", id)                       (no answer: the reply in flight ends with "done")
    ("count", id, messages)              -> ("result", n) | ("error", sentence)
    ("bench_pp", n) / ("bench_native", n) / ("reset")  -> ("result", value) | ("error", sentence)
    ("shutdown",)                        (the runner frees the model and exits)
Runner -> app, unasked: ("ready", pid) once it has started; ("progress",) at most every PROGRESS_SECONDS
    while a load or a reply is under way and nothing else was sent (a prompt evaluation may send no text
    for minutes): silence for STALL_SECONDS then means the runner is stalled (stopped, or starved).
A text batch's `kind` is "thinking" or "answer" (assistant/engine/thinking.py tells them apart).
"""

LOAD, CHAT, COMPLETE, CANCEL, COUNT, SHUTDOWN = "load", "chat", "complete", "cancel", "count", "shutdown"
BENCH_PP, BENCH_NATIVE, RESET = "bench_pp", "bench_native", "reset"
READY, LOADED, RENDERED, TEXT, DONE, ERROR, RESULT = "ready", "loaded", "rendered", "text", "done", "error", "result"
PROGRESS = "progress"

# Text is sent in batches at most this often (the first token at once): fewer wake-ups of the
# app on a 2-core machine where llama.cpp's threads spin, and no visible delay. Each batch costs
# about 0.1 ms of CPU in the runner (pickle, send) and as much in the app (wake, read, hand on),
# and the app's wake-up preempts one of llama.cpp's threads while the other waits for it: at
# 20 ms (50 batches a second on a 60 tokens/s model) that cost was paid 2.5 times as often, for
# nothing a reader sees (the window redraws every 50 ms; 20 updates a second read as smooth).
TEXT_BATCH_SECONDS = 0.05
# A reply's prompt must be rendered and tokenized within this; the runner's own template limit
# (2 s per render) acts first, this catches a runner stuck in C code.
RENDER_DEADLINE_SECONDS = 30.0
# After a cancel, the runner must answer within this, else it is ended.
CANCEL_GRACE_SECONDS = 2.0
# A runner must be up and ready within this.
START_DEADLINE_SECONDS = 60.0
# While loading or answering, the runner says it is alive at least this often: from between llama.cpp's
# graph nodes during a prompt evaluation (its abort callback), once per token while generating, from a
# thread while loading (llama.cpp's loader is C code).
PROGRESS_SECONDS = 1.0
# No word from a runner for this long, mid-load or mid-reply, means it has stalled (stopped with SIGSTOP,
# or starved): the app ends it with a sentence instead of waiting for ever. Generous: one token of a very
# large model on a slow machine can take seconds.
STALL_SECONDS = 60.0
