"""Make a large chat history for the benchmark: 10,000 conversations, 200,000 messages.

    python bench/make_history.py [--out bench/out/history-bench.db] [--conversations 10000] [--messages 200000]
                                 [--cjk-share 0.05]

Text is drawn from a Zipf-weighted vocabulary (common English words plus made-up
ones), so search sees realistic posting lists: a few very common words, a long
tail of rare ones. A share of the conversations (5% by default) is Japanese,
written without spaces and with emoji runs, as the substring (trigram) search
meets it. Every reply carries a full engine-like statistics record, and a
few conversations are exactly 500 messages long (the "open a long conversation"
case). Rows go in through bulk inserts in one transaction, with the FTS triggers
live, so the file is what the app itself would have written.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assistant.history import HistoryStore  # noqa: E402

COMMON = """the of and to a in is it you that he was for on are with as I his they be at one have this from
or had by hot word but what some we can out other were all there when up use your how said an each she which do
their time if will way about many then them write would like so these her long make thing see him two has look
more day could go come did number sound no most people my over know water than call first who may down side been
now find any new work part take get place made live where after back little only round man year came show every
good me give our under name very through just form sentence great think say help low line differ turn cause much
mean before move right boy old too same tell does set three want air well also play small end put home read hand
port large spell add even land here must big high such follow act why ask men change went light kind off need
house picture try us again animal point mother world near build self earth father head stand own page should
country found answer school grow study still learn plant cover food sun four between state keep eye never last
let thought city tree cross farm hard start might story saw far sea draw left late run while press close night
real life few north open seem together next white children begin got walk example ease paper group always music
those both mark often letter until mile river car feet care second book carry took science eat room friend began
idea fish mountain stop once base hear horse cut sure watch color face wood main enough plain girl usual young
ready above ever red list though feel talk bird soon body dog family direct pose leave song measure door product
black short numeral class wind question happen complete ship area half rock order fire south problem piece told
knew pass since top whole king space heard best hour better true during hundred five remember step early hold
west ground interest reach fast verb sing listen six table travel less morning ten simple several vowel toward
war lay against pattern slow center love person money serve appear road map rain rule govern pull cold notice
voice unit power town fine certain fly fall lead cry dark machine note wait plan figure star box noun field rest
correct able pound done beauty drive stood contain front teach week final gave green oh quick develop ocean warm
free minute strong special mind behind clear tail produce fact street inch multiply nothing course stay wheel
full force blue object decide surface deep moon island foot system busy test record boat common gold possible
plane stead dry wonder laugh thousand ago ran check game shape equate miss brought heat snow tire bring yes
distant fill east paint language among python function variable model token memory speed quantize llama gemma
recipe bread garden travel budget email poem translate summary code error debug database query server""".split()
# Japanese words, joined without spaces as Japanese is written, and emoji runs.
JAPANESE = """機械学習 深層学習 データ モデル 推論 量子化 自然言語処理 東京 天気 料理 レシピ 旅行 予算 翻訳 要約
コード エラー データベース サーバー 質問 答え 説明 方法 違い 時間 速度 記憶 です ます の は を に と が で も
から まで について ください""".split()
EMOJI = "🎉 🍕 😀 👍 🙂 🚀 ✨ 👨‍👩‍👧".split()
SYLLABLES = "ka ri to mu sen dal ver qua lin mor ex pen tal dor vis ul ra bel cor fin gra hul jo ne os pi zu".split()


def vocabulary(rng: random.Random, n_made_up: int = 20_000) -> tuple[list[str], list[float]]:
    made_up = {"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(n_made_up)}
    words = COMMON + sorted(made_up - set(COMMON))
    cum, total = [], 0.0
    for rank in range(1, len(words) + 1):  # Zipf: the r-th word is 1/r as frequent as the first
        total += 1.0 / rank
        cum.append(total)
    return words, cum


def stats_record(rng: random.Random, model: tuple[str, str], completion_tokens: int) -> dict:
    gen_tps = rng.uniform(8, 60)
    prompt_tps = rng.uniform(100, 900)
    prompt_tokens = rng.randint(20, 3000)
    prompt_ms = prompt_tokens / prompt_tps * 1000
    gen_ms = completion_tokens / gen_tps * 1000
    return {
        "reply": "", "model": {"name": model[0], "file": f"{model[0]}-{model[1]}.gguf", "quant": model[1],
                               "size_bytes": rng.randint(200, 5000) * 1_000_000, "n_params": 270_000_000},
        "prompt_tokens": prompt_tokens, "cached_tokens": rng.randint(0, prompt_tokens), "prompt_ms": prompt_ms,
        "prompt_tps": prompt_tps, "ttft_ms": prompt_ms + rng.uniform(5, 50), "completion_tokens": completion_tokens,
        "gen_ms": gen_ms, "gen_tps": gen_tps, "total_ms": prompt_ms + gen_ms, "stop_reason": "stop",
        "n_ctx": 4096, "n_threads": 8,
        "memory": {"weights_bytes": 253_000_000, "kv_bytes": 50_000_000, "compute_bytes": 10_000_000,
                   "rss_bytes": 1_200_000_000, "rss_peak_bytes": 1_300_000_000, "vram_bytes": 0},
        "backend": {"name": "cpu", "threads": 8, "flash_attn": False},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "history-bench.db"))
    ap.add_argument("--conversations", type=int, default=10_000)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--long", type=int, default=5, help="conversations of exactly 500 messages")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cjk-share", type=float, default=0.05, help="share of conversations written in Japanese")
    args = ap.parse_args(argv)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{out}{suffix}").unlink(missing_ok=True)
    rng = random.Random(args.seed)
    words, cum = vocabulary(rng)
    models = [("gemma-3-270m", "Q4_K_M"), ("qwen2.5-1.5b", "Q4_K_M"), ("llama-3.2-3b", "Q4_0")]

    # Message counts: a few of exactly 500, the rest share what is left (at least 2 each).
    n_conv, n_long = args.conversations, min(args.long, args.conversations)
    rest = args.messages - 500 * n_long
    counts = [500] * n_long + [2] * (n_conv - n_long)
    for _ in range(rest - 2 * (n_conv - n_long)):
        counts[rng.randrange(n_long, n_conv)] += 1
    rng.shuffle(counts)

    def text(n_words: int) -> str:
        return " ".join(rng.choices(words, cum_weights=cum, k=n_words)).capitalize() + "."

    def japanese(n_words: int) -> str:
        parts = rng.choices(JAPANESE, k=n_words)
        if rng.random() < 0.3:
            parts.insert(rng.randrange(len(parts) + 1), "".join(rng.choices(EMOJI, k=rng.randint(2, 5))))
        return "".join(parts) + "。"

    started = time.perf_counter()
    store = HistoryStore.open(out)
    conn = store.conn
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    msg_id = 0
    conversations, messages, stats = [], [], []
    for cid, count in enumerate(counts, start=1):
        model = models[cid % len(models)]
        writer = japanese if rng.random() < args.cjk_share else text
        at = t0 + timedelta(minutes=cid * 50)
        parent = None
        for i in range(count):
            msg_id += 1
            at += timedelta(seconds=rng.randint(5, 120))
            ts = at.isoformat(timespec="microseconds")
            role = "user" if i % 2 == 0 else "assistant"
            n_words = rng.randint(5, 40) if role == "user" else rng.randint(20, 120)
            # Every 25th reply is a regenerated version: a sibling of the previous reply.
            branch_parent = messages[-1][3] if role == "assistant" and i > 2 and i % 25 == 1 else parent
            messages.append((msg_id, uuid.uuid4().hex, cid, branch_parent, role, writer(n_words), "complete", ts, ts))
            if role == "assistant":
                r = stats_record(rng, model, int(n_words * 1.3))
                stats.append((msg_id, model[0], r["model"]["file"], model[1], r["gen_tps"], r["prompt_tps"],
                              r["ttft_ms"], r["prompt_tokens"], r["completion_tokens"], r["stop_reason"], ts,
                              json.dumps(r)))
            parent = msg_id
        conversations.append((cid, uuid.uuid4().hex, None, model[0], "You are a helpful assistant.",
                              json.dumps({"temperature": 0.7}), parent, (t0 + timedelta(minutes=cid * 50)).isoformat(
                                  timespec="microseconds"), at.isoformat(timespec="microseconds")))
    # Titles from the first user message, as the app does.
    first = {}
    for m in messages:
        first.setdefault(m[2], m[5])
    from assistant.history.records import title_from

    conversations = [(c[0], c[1], title_from(first[c[0]]), *c[3:]) for c in conversations]
    generated = time.perf_counter()

    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO conversations (id, uid, title, model, system_prompt, settings, current_leaf_id, "
                     "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", conversations)
    conn.executemany("INSERT INTO messages (id, uid, conversation_id, parent_id, role, content, status, created_at, "
                     "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", messages)
    conn.executemany("INSERT INTO stats (message_id, model, model_file, quant, gen_tps, prompt_tps, ttft_ms, "
                     "prompt_tokens, completion_tokens, stop_reason, created_at, record) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", stats)
    conn.execute("COMMIT")
    for index in ("messages_fts", "messages_trigram"):  # merge FTS segments, as after a while
        conn.execute(f"INSERT INTO {index}({index}) VALUES ('optimize')")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    done = time.perf_counter()
    long_ids = [cid for cid, n in enumerate(counts, start=1) if n == 500]
    print(f"{out}: {n_conv} conversations, {len(messages)} messages, {len(stats)} stats records, "
          f"{out.stat().st_size / 1e6:.0f} MB; generated in {generated - started:.1f} s, "
          f"written in {done - generated:.1f} s. 500-message conversations: {long_ids}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
