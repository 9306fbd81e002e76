"""Load for scripts/bench-serve: streaming clients against a running
`trtllm-minitron serve`, standard library only (threads and http.client).

  serve_load.py levels --url URL --model NAME --concurrency 1,4,16 ...
      After one warm-up request, N concurrent streaming clients per level
      (each sends --rounds requests, one after the other); prints one JSON object per
      level: aggregate generated tokens/s (over the wall time, prefill
      included), aggregate decode tokens/s (tokens after each stream's first,
      over the window from the first first-token to the last token, so other
      streams' prefills fall inside it), steady decode tokens/s (the streams'
      rates while every client's stream is decoding, summed: see
      `steady_decode`), time to first
      token and inter-token latency p50/p99 (client-side, from SSE arrival
      times; a chunk that holds back text counts with the next).
  serve_load.py soak --url URL --model NAME --pid PID --bin BIN --checkpoint DIR ...
      1,000 requests of mixed lengths, 10% of clients disconnecting midway;
      server RSS after warm-up and at the end, lost requests, and every
      completed greedy request against `run` alone.
"""

import argparse
import http.client
import json
import random
import subprocess
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor


def percentile(values, q):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def prompt_ids(n, vocab, salt):
    """Deterministic token ids, spread over the vocabulary (no special ids)."""
    return [5 + (salt * 7919 + i * 104729) % (vocab - 5) for i in range(n)]


def stream_request(url, body, disconnect_after=None, timeout=3600):
    """One streaming completion. Returns a dict: status, text, tokens (usage),
    finish, ttft, times (each chunk's arrival, perf_counter seconds: the
    first token's and the last's, and the gaps between them, come from it),
    done ([DONE] seen)."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    payload = json.dumps(dict(body, stream=True, stream_options={"include_usage": True}))
    start = time.perf_counter()
    conn.request("POST", "/v1/completions", payload, {"Content-Type": "application/json"})
    res = conn.getresponse()
    out = {"status": res.status, "text": "", "tokens": None, "finish": None, "ttft": None,
           "times": [], "done": False, "disconnected": False}
    if res.status != 200:
        out["error"] = res.read().decode()
        conn.close()
        return out
    for raw in res:
        line = raw.decode().rstrip("\r\n")
        if not line.startswith("data: "):
            continue
        data = line[len("data: "):]
        if data == "[DONE]":
            out["done"] = True
            break
        event = json.loads(data)
        if "error" in event:
            out["error"] = event["error"]
            break
        now = time.perf_counter()
        if event.get("usage"):
            out["tokens"] = event["usage"]["completion_tokens"]
        for choice in event.get("choices", []):
            out["text"] += choice["text"]
            if choice["finish_reason"]:
                out["finish"] = choice["finish_reason"]
            # A chunk with text, or with a token id (a model without a tokenizer).
            if choice["text"] or choice.get("token_ids"):
                if not out["times"]:
                    out["ttft"] = now - start
                out["times"].append(now)
        if disconnect_after is not None and len(out["times"]) >= disconnect_after:
            out["disconnected"] = True
            break
    conn.close()
    out["elapsed"] = time.perf_counter() - start
    return out


def gaps(times):
    """Seconds between consecutive chunk arrivals (the inter-token latencies)."""
    return [b - a for a, b in zip(times, times[1:])]


def steady_decode(results, clients):
    """Decode tokens/s over the spans in which all `clients` streams are
    decoding (each past its first token and not yet at its last): the batch's
    decode rate with every client in it, which neither a prefill nor a client
    waiting for its first token dilutes. Each stream's rate is its gaps
    between chunks that lie wholly inside those spans, over their total
    length; the batch's rate is their sum. (Counting the chunks inside the
    spans instead would lose up to one step's tokens at each edge: the server
    sends a step's tokens one stream after another, and an edge falls between
    them.) Returns (rate, seconds covered), or (None, 0) when the clients
    never all decoded at once."""
    spans = [(r["times"][0], r["times"][-1]) for r in results if r["times"]]
    edges = sorted([(a, 1) for a, b in spans if b > a] + [(b, -1) for a, b in spans if b > a],
                   key=lambda e: (e[0], e[1]))
    windows, active, start = [], 0, None
    for t, step in edges:
        active += step
        if active == clients and step == 1:
            start = t
        elif start is not None and active < clients:
            windows.append((start, t))
            start = None
    covered = sum(b - a for a, b in windows)
    if covered <= 0:
        return None, 0.0
    rate = 0.0
    for r in results:
        inside = [(t0, t1) for t0, t1 in zip(r["times"], r["times"][1:])
                  if any(a <= t0 and t1 <= b for a, b in windows)]
        length = sum(t1 - t0 for t0, t1 in inside)
        if length > 0:
            rate += len(inside) / length
    return (rate or None), covered


def levels(args):
    body = lambda i: {"model": args.model, "prompt": prompt_ids(args.prompt_tokens, args.vocab, i),
                      "max_tokens": args.new_tokens, "temperature": 0}
    # Warm-up, not measured: the first request faults in the memory-mapped
    # weights and sizes the server's buffers.
    warm = stream_request(args.url, dict(body(-1), max_tokens=2))
    if warm["status"] != 200 or not warm["done"]:
        sys.exit(f"serve_load: the warm-up request failed: {warm}")
    for c in [int(x) for x in args.concurrency.split(",")]:
        n = c * args.rounds
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=c) as pool:
            results = list(pool.map(lambda i: stream_request(args.url, body(i)), range(n)))
        wall = time.perf_counter() - t0
        bad = [r for r in results if r["status"] != 200 or not r["done"]]
        tokens = sum(r["tokens"] or 0 for r in results)
        ttft = [r["ttft"] for r in results if r["ttft"] is not None]
        itl = [g for r in results for g in gaps(r["times"])]
        # Decode: the tokens after each stream's first, over the window from the
        # first stream's first token to the last stream's last (other streams'
        # prefills may fall inside it; `steady_decode` leaves them out).
        timed = [r["times"] for r in results if r["times"]]
        window = max(t[-1] for t in timed) - min(t[0] for t in timed) if timed else 0
        decode_tokens = sum(len(t) - 1 for t in timed)
        steady, steady_s = steady_decode(results, c)
        print(json.dumps({
            "concurrency": c, "requests": n, "failed": len(bad), "generated_tokens": tokens,
            "wall_s": round(wall, 3), "tokens_per_s": round(tokens / wall, 3),
            "decode_tokens_per_s": round(decode_tokens / window, 3) if window > 0 else None,
            "steady_decode_tokens_per_s": round(steady, 3) if steady else None,
            "steady_decode_s": round(steady_s, 3),
            "ttft_p50_s": percentile(ttft, 50), "ttft_p99_s": percentile(ttft, 99),
            "itl_p50_s": percentile(itl, 50), "itl_p99_s": percentile(itl, 99),
        }), flush=True)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def metric(url, name):
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def soak(args):
    rng = random.Random(args.seed)
    distinct = [prompt_ids(rng.randint(1, 64), args.vocab, 1000 + k) for k in range(40)]
    lengths = [8, 16, 32, 64]

    def job(i):
        r = random.Random(args.seed * 1_000_003 + i)
        p = r.randrange(len(distinct))
        n = r.choice(lengths)
        leave = r.random() < args.disconnect_share
        return p, n, leave

    def one(i):
        p, n, leave = job(i)
        body = {"model": args.model, "prompt": distinct[p], "max_tokens": n, "temperature": 0}
        res = stream_request(args.url, body, disconnect_after=(n // 2 if leave else None))
        res["job"] = (p, n, leave)
        return res

    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        list(pool.map(one, range(-args.warmup, 0)))
    time.sleep(1.0)
    rss_warm = rss_kib(args.pid)
    # The server's count covers its whole life: the warm-up's abandoned
    # requests are subtracted, so the figure is the soak's own.
    abandoned = 'trtllm_minitron_generations_finished_total{reason="abandoned"}'
    abandoned_warm = metric(args.url, abandoned)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        results = list(pool.map(one, range(args.requests)))
    wall = time.perf_counter() - t0
    time.sleep(1.0)
    rss_end = rss_kib(args.pid)
    left = [r for r in results if r["job"][2]]
    completed = [r for r in results if not r["job"][2]]
    lost = [r for r in completed if r["status"] != 200 or not r["done"] or r["finish"] is None]
    # Every completed greedy request against `run` of the same prompt alone.
    wanted = sorted({r["job"][:2] for r in completed})
    reference = {}
    for p, n in wanted:
        out = subprocess.run(
            [args.bin, "run", "--model", args.checkpoint, "--input-ids", ",".join(map(str, distinct[p])),
             "--max-new-tokens", str(n), "--json"],
            check=True, capture_output=True, text=True)
        reference[(p, n)] = json.loads(out.stdout)["text"]
    mismatched = [r["job"] for r in completed if r["done"] and r["text"] != reference[r["job"][:2]]]
    summary = {
        "requests": args.requests, "concurrency": args.concurrency, "wall_s": round(wall, 1),
        "disconnected": len(left), "completed": len(completed), "lost": len(lost),
        "unbatched_compared": len(completed), "distinct_references": len(reference),
        "mismatched": len(mismatched),
        "rss_after_warmup_kib": rss_warm, "rss_end_kib": rss_end,
        "rss_change_pct": round(100.0 * (rss_end - rss_warm) / rss_warm, 2),
        # Requests the server saw abandoned (a disconnect it noticed before the
        # request's last token; one it did not notice finishes normally).
        "abandoned_metric": metric(args.url, abandoned) - abandoned_warm,
        "running_at_end": metric(args.url, "trtllm_minitron_running_batch_size"),
        "queued_at_end": metric(args.url, "trtllm_minitron_queue_depth"),
    }
    print(json.dumps(summary), flush=True)
    ok = (not lost and not mismatched and abs(summary["rss_change_pct"]) <= 5.0
          and summary["running_at_end"] == 0 and summary["queued_at_end"] == 0)
    if lost:
        print("lost:", json.dumps(lost[:3]), file=sys.stderr)
    if mismatched:
        print("mismatched (prompt, max_tokens, left):", mismatched[:10], file=sys.stderr)
    sys.exit(0 if ok else 1)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    lv = sub.add_parser("levels")
    sk = sub.add_parser("soak")
    for p in (lv, sk):
        p.add_argument("--url", required=True)
        p.add_argument("--model", required=True)
        p.add_argument("--vocab", type=int, required=True)
    lv.add_argument("--concurrency", default="1,4,16,64")
    lv.add_argument("--rounds", type=int, default=1, help="requests per client")
    lv.add_argument("--prompt-tokens", type=int, default=16)
    lv.add_argument("--new-tokens", type=int, default=32)
    sk.add_argument("--pid", type=int, required=True)
    sk.add_argument("--bin", required=True)
    sk.add_argument("--checkpoint", required=True)
    sk.add_argument("--requests", type=int, default=1000)
    sk.add_argument("--warmup", type=int, default=100)
    sk.add_argument("--concurrency", type=int, default=16)
    sk.add_argument("--disconnect-share", type=float, default=0.1)
    sk.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    {"levels": levels, "soak": soak}[args.mode](args)


if __name__ == "__main__":
    main()
