"""Checks `trtllm-minitron serve` with OpenAI's Python client (run by
scripts/test-openai-client, which starts the servers).

Every check compares with what the tool's own `run` command prints for the
same prompt and options, or with what the OpenAI API documents: the status
codes and the exception classes the client raises for them.
"""

import argparse
import json
import subprocess
import sys
import threading

import openai
from openai import OpenAI

MODEL = "demo-shakespeare"
CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def run_alone(args, prompt, max_new_tokens, *extra, model=None):
    """`run --json` on one prompt: the reference for a completion."""
    out = subprocess.run(
        [args.bin, "run", "--model", model or args.demo, "--max-new-tokens", str(max_new_tokens),
         "--json", *extra, prompt],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout)


def expect_error(kind, status, fn, param=None, text=None):
    try:
        fn()
    except kind as e:
        assert e.status_code == status, (e.status_code, e)
        error = e.body if isinstance(e.body, dict) else {}
        if param is not None:
            assert error.get("param") == param, error
        if text is not None:
            assert text in error.get("message", ""), error
        return e
    raise AssertionError(f"expected {kind.__name__} ({status})")


@check
def models_lists_the_served_model(args, client, small, chat):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL], models


@check
def a_greedy_completion_is_runs_output(args, client, small, chat):
    alone = run_alone(args, "ROMEO:", 16)
    c = client.completions.create(model=MODEL, prompt="ROMEO:", max_tokens=16, temperature=0)
    assert c.choices[0].text == alone["text"], (c.choices[0].text, alone["text"])
    assert c.choices[0].finish_reason == "length"
    assert c.usage.prompt_tokens == len(alone["input_ids"])
    assert c.usage.completion_tokens == 16
    assert c.usage.total_tokens == c.usage.prompt_tokens + 16


@check
def streaming_gives_the_same_text(args, client, small, chat):
    whole = client.completions.create(model=MODEL, prompt="JULIET:", max_tokens=20, temperature=0)
    stream = client.completions.create(
        model=MODEL, prompt="JULIET:", max_tokens=20, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text, (text, whole.choices[0].text)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and all(f is None for f in finishes[:-1]), finishes
    assert chunks[-1].usage.completion_tokens == 20, chunks[-1]


@check
def a_stop_string_ends_the_text(args, client, small, chat):
    whole = client.completions.create(model=MODEL, prompt="ROMEO:", max_tokens=30, temperature=0)
    text = whole.choices[0].text
    stop = text.split()[3]
    c = client.completions.create(model=MODEL, prompt="ROMEO:", max_tokens=30, temperature=0, stop=[stop])
    assert c.choices[0].text == text[: text.index(stop)], (c.choices[0].text, stop)
    assert c.choices[0].finish_reason == "stop"


@check
def a_seed_reproduces_sampling_and_matches_run(args, client, small, chat):
    def sample(seed):
        return client.completions.create(
            model=MODEL, prompt="To be or not to be,", max_tokens=24, temperature=0.9, top_p=0.9, seed=seed,
        ).choices[0].text

    assert sample(11) == sample(11)
    assert sample(11) != sample(12)
    alone = run_alone(args, "To be or not to be,", 24, "--temperature", "0.9", "--top-p", "0.9", "--seed", "11")
    assert sample(11) == alone["text"], (sample(11), alone["text"])


@check
def log_probs_are_runs(args, client, small, chat):
    alone = run_alone(args, "ROMEO:", 8)
    c = client.completions.create(model=MODEL, prompt="ROMEO:", max_tokens=8, temperature=0, logprobs=0)
    lp = c.choices[0].logprobs
    assert len(lp.token_logprobs) == len(alone["logprobs"])
    assert all(abs(a - b) < 1e-5 for a, b in zip(lp.token_logprobs, alone["logprobs"]))
    assert "".join(lp.tokens) == c.choices[0].text


@check
def several_prompts_are_several_choices(args, client, small, chat):
    c = client.completions.create(model=MODEL, prompt=["ROMEO:", "JULIET:"], max_tokens=6, temperature=0)
    assert [ch.index for ch in c.choices] == [0, 1]
    assert c.choices[1].text == run_alone(args, "JULIET:", 6)["text"]


@check
def concurrent_requests_each_equal_run_alone(args, client, small, chat):
    prompts = ["A", "ROMEO:", "Now is the winter of our discontent", "O Romeo, Romeo!", "KING:"]
    results = {}

    def one(p):
        results[p] = client.completions.create(model=MODEL, prompt=p, max_tokens=12, temperature=0)

    threads = [threading.Thread(target=one, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in prompts:
        assert results[p].choices[0].text == run_alone(args, p, 12)["text"], p


@check
def errors_are_the_clients_exceptions(args, client, small, chat):
    bad_key = OpenAI(base_url=args.main + "/v1", api_key="wrong", max_retries=0)
    expect_error(openai.AuthenticationError, 401, lambda: bad_key.models.list())
    expect_error(openai.BadRequestError, 400, lambda: client.completions.create(
        model=MODEL, prompt="x", temperature=-1), param="temperature")
    expect_error(openai.BadRequestError, 400, lambda: client.completions.create(
        model=MODEL, prompt="x", n=2), param="n")
    expect_error(openai.BadRequestError, 400, lambda: client.completions.create(
        model=MODEL, prompt="x", max_tokens=100000), param="max_tokens", text="maximum context length")
    expect_error(openai.BadRequestError, 400, lambda: client.completions.create(
        model=MODEL, prompt="x", extra_body={"frobnicate": 1}), param="frobnicate")
    expect_error(openai.NotFoundError, 404, lambda: client.completions.create(
        model="gpt-4o", prompt="x"), param="model")
    expect_error(openai.APIStatusError, 413, lambda: client.completions.create(
        model=MODEL, prompt="a" * (2 << 20)))
    expect_error(openai.BadRequestError, 400, lambda: client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}]), param="messages", text="no chat template")


@check
def a_full_queue_is_a_rate_limit_error(args, client, small, chat):
    busy = OpenAI(base_url=small + "/v1", api_key="none", max_retries=0)
    stream = busy.completions.create(model=MODEL, prompt="ROMEO:", max_tokens=400, temperature=0, stream=True)
    first = next(iter(stream))
    assert first.choices
    e = expect_error(openai.RateLimitError, 429, lambda: busy.completions.create(model=MODEL, prompt="x"))
    assert e.response.headers.get("retry-after") == "1"
    stream.close()


@check
def chat_uses_the_template(args, client, small, chat):
    talk = OpenAI(base_url=chat + "/v1", api_key="none", max_retries=0)
    messages = [{"role": "system", "content": " A street in Verona. "}, {"role": "user", "content": "Speak."}]
    rendered = "SYSTEM:\nA street in Verona.\nUSER:\nSpeak.\nROMEO:\n"
    alone = run_alone(args, rendered, 12, model=args.chat_model)
    c = talk.chat.completions.create(model=MODEL, messages=messages, max_tokens=12, temperature=0)
    assert c.choices[0].message.role == "assistant"
    assert c.choices[0].message.content == alone["text"], (c.choices[0].message.content, alone["text"])
    assert c.usage.prompt_tokens == len(alone["input_ids"])
    chunks = list(talk.chat.completions.create(model=MODEL, messages=messages, max_tokens=12, temperature=0,
                                                stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks)
    assert text == alone["text"]
    assert chunks[-1].choices[0].finish_reason == "length"


def main():
    ap = argparse.ArgumentParser()
    for name in ["bin", "demo", "main", "small", "chat", "chat-model"]:
        ap.add_argument("--" + name, required=True)
    args = ap.parse_args()
    client = OpenAI(base_url=args.main + "/v1", api_key="secret-key", max_retries=0)
    failed = 0
    for fn in CHECKS:
        try:
            fn(args, client, args.small, args.chat)
            print(f"ok      {fn.__name__}")
        except Exception as e:  # report every check, then fail
            failed += 1
            print(f"FAILED  {fn.__name__}: {type(e).__name__}: {e}")
    print(f"openai {openai.__version__}: {len(CHECKS) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
