"""Thinking benchmark: what dropping a reply's thinking from the history costs the next turn.

    .venv/bin/python bench/thinking_bench.py                    # a random 60M-parameter model, 2 threads
    .venv/bin/python bench/thinking_bench.py --think 512 --answer 128 --repeats 5 -t 2

Qwen3.5's template (like most reasoning templates) does not send a reply's thinking back in later
turns, so turn 2's prompt differs from what the KV cache holds at the start of turn 1's reply: the
cache is reused up to there, and turn 1's answer is evaluated again, after the new position. The
thinking itself is never evaluated again. Three conversations, each turn 1 then a one-token turn 2,
alternating, on the same random-weight model with Qwen3.5's real template:

- **thinking**: turn 1 thinks for `--think` tokens (closed by the thinking budget) and answers
  `--answer` tokens; turn 2's prompt drops the thinking.
- **off**: turn 1 with thinking off (`enable_thinking` false), the same `--answer` tokens: the
  template rewrites that reply too (it drops the empty block), so its answer is evaluated again as well.
- **kept** (the baseline): the same model under a ChatML template override that renders the reply
  back exactly as generated, so turn 2 evaluates only its own new tokens.

Printed: turn 2's prompt, cached and evaluated tokens and its time to first token (medians), and the
ratios thinking/off and thinking/kept. A random model's words are noise; its timings are real.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from assistant.chat_service import ChatService, TurnFinished, TurnRequest
from assistant.engine import GenerationSettings, LoadSettings, LocalEngine
from assistant.history import HistoryStore
from common.formatting import format_number

VOCAB = 32000
CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def turn(service: ChatService, text: str, settings: GenerationSettings, conversation_id: int | None) -> TurnFinished:
    done = service.submit(TurnRequest(text=text, conversation_id=conversation_id, settings=settings,
                                      source="cli")).result(600)
    if not isinstance(done, TurnFinished) or done.stats.get("stop_reason") == "error":
        raise SystemExit(f"a turn failed: {getattr(done, 'sentence', None) or done.stats.get('error')}")
    return done


def word_grammar() -> str:
    """Replies made of whole-word tokens (" the", " of", ...), each its own token: the text then tokenizes
    back into the same tokens, as a real model's mostly does (a random model forced letter by letter
    would pick odd splits, and no template could keep its prefix)."""
    from tests.support.thinking_models import FAMILIES
    from tests.support.tiny_gguf import build_vocab

    tokens = build_vocab(VOCAB, FAMILIES["think_tags"][1])[0]
    ids = [tokens.index("\u2581" + w) for w in ("the", "of", "and", "to", "in", "is", "you", "that", "it", "was")]
    return "root ::= (" + " | ".join(f"<[{i}]>" for i in ids) + ")+"


def conversation(service: ChatService, case: str, args, n: int) -> dict:
    first = GenerationSettings(temperature=0, grammar=args.grammar, stop_on_repetition=False,
                               max_tokens=args.answer)
    if case == "thinking":
        first.thinking_budget, first.max_tokens = args.think, args.think + args.answer + 8
    elif case == "off":
        first.thinking = "off"
    one = turn(service, f"Question number {n} about {case}.", first, None)
    two = turn(service, "And then?", GenerationSettings(temperature=0, max_tokens=1), one.conversation_id)
    s1, s2 = one.stats, two.stats
    return {"turn1_thinking": s1["thinking_tokens"], "turn1_answer": s1["answer_tokens"],
            "prompt": s2["prompt_tokens"], "cached": s2["cached_tokens"],
            "evaluated": s2["prompt_tokens"] - s2["cached_tokens"], "ttft_ms": s2["ttft_ms"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-t", "--threads", type=int, default=2)
    parser.add_argument("--think", type=int, default=512, help="thinking tokens of turn 1 (default 512)")
    parser.add_argument("--answer", type=int, default=128, help="answer tokens of turn 1 (default 128)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.support.thinking_models import write_thinking_model

    args.grammar = word_grammar()
    results: dict[str, list[dict]] = {"thinking": [], "off": [], "kept": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = write_thinking_model(Path(tmp) / "qwen.gguf", "think_tags", n_ctx=4096, n_layers=8, n_embd=512,
                                    n_heads=8, n_kv_heads=2, n_ff=1536, quant="Q4_K_M", vocab=VOCAB)
        store = HistoryStore.open(Path(tmp) / "history.db")
        service = ChatService(LocalEngine(), store)
        try:
            for r in range(args.repeats):
                service.load(str(path), LoadSettings(n_ctx=4096, n_threads=args.threads)).result(300)
                for case in ("thinking", "off"):
                    results[case].append(conversation(service, case, args, r))
                service.load(str(path), LoadSettings(n_ctx=4096, n_threads=args.threads,
                                                     chat_template=CHATML)).result(300)
                results["kept"].append(conversation(service, "kept", args, r))
        finally:
            service.close()
            store.close()

    def median(case: str, key: str) -> float:
        return statistics.median(x[key] for x in results[case])

    summary = {case: {key: median(case, key) for key in results[case][0]} for case in results}
    ratio_off = summary["thinking"]["ttft_ms"] / summary["off"]["ttft_ms"]
    ratio_kept = summary["thinking"]["ttft_ms"] / summary["kept"]["ttft_ms"]
    if args.json:
        print(json.dumps({"cases": summary, "thinking_over_off": ratio_off, "thinking_over_kept": ratio_kept}))
        return 0
    print(f"turn 2 after a reply of {args.think} thinking + {args.answer} answer tokens; medians of {args.repeats}")
    print(f"{'case':<10} {'prompt':>7} {'cached':>7} {'evaluated':>10} {'first token':>12}")
    for case, s in summary.items():
        print(f"{case:<10} {int(s['prompt']):>7} {int(s['cached']):>7} {int(s['evaluated']):>10} "
              f"{format_number(s['ttft_ms'])} ms".rjust(12))
    print(f"thinking / off:  {ratio_off:.2f}  (dropping the thinking costs no more than a reply without it)")
    print(f"thinking / kept: {ratio_kept:.2f}  (the previous answer evaluated again, never its thinking)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
