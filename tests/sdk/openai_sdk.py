#!/usr/bin/env python3
"""The official `openai` Python SDK against a real gateway serving the shipped mock provider.

Usage: python3 tests/sdk/openai_sdk.py [path/to/switchboard]   (default: target/debug/switchboard)
Starts the binary on port 0 in a temp folder, runs the checks, prints 'N passed, N failed'.
"""
import os
import subprocess
import sys
import tempfile
import traceback

import openai

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "switchboard")


def start(tmp):
    env = dict(os.environ, RUST_LOG="warn", SWITCHBOARD_ADMIN_KEY="sk-sdk-admin")
    proc = subprocess.Popen(
        [BINARY, "serve", "--listen", "127.0.0.1:0", "--data", os.path.join(tmp, "data"),
         "--providers", os.path.join(ROOT, "providers.d"), "--policies", os.path.join(ROOT, "policies")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )
    for line in proc.stdout:
        if line.startswith("switchboard listening on "):
            return proc, line.split()[-1].strip()
    proc.kill()
    raise RuntimeError("the gateway exited before listening")


def checks(client):
    def chat():
        r = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello sdk"}])
        assert r.choices[0].message.content == "hello sdk", r
        assert r.usage.total_tokens == 4, r.usage

    def chat_raw_headers():
        raw = client.chat.completions.with_raw_response.create(
            model="mock/echo", messages=[{"role": "user", "content": "hi"}])
        assert raw.headers["x-switchboard-provider"] == "mock"
        assert raw.headers.get("x-request-id")

    def stream():
        parts = []
        usage = None
        for chunk in client.chat.completions.create(
                model="echo", stream=True, stream_options={"include_usage": True},
                messages=[{"role": "user", "content": "one two three four"}]):
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
            if chunk.usage:
                usage = chunk.usage
        assert "".join(parts) == "one two three four", parts
        assert len(parts) == 4, parts
        assert usage and usage.completion_tokens == 4, usage

    def models():
        ids = [m.id for m in client.models.list()]
        assert "mock/echo" in ids, ids
        assert client.models.retrieve("mock/echo").owned_by == "mock"

    def embeddings():
        r = client.embeddings.create(model="text-embedding-mock", input=["a", "b"])
        assert len(r.data) == 2 and len(r.data[0].embedding) == 8

    def completions():
        r = client.completions.create(model="echo", prompt="echo me")
        assert r.choices[0].text == "echo me"

    def unknown_model_is_not_found():
        try:
            client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        except openai.NotFoundError as e:
            assert "no-such-model" in str(e)
        else:
            raise AssertionError("expected NotFoundError")

    def bad_key_is_authentication_error():
        bad = openai.OpenAI(base_url=client.base_url, api_key="wrong", max_retries=0)
        try:
            bad.models.list()
        except openai.AuthenticationError:
            pass
        else:
            raise AssertionError("expected AuthenticationError")

    # The shipped policies, through the SDK.
    def alias_falls_back_to_the_mock():
        raw = client.chat.completions.with_raw_response.create(
            model="smart", messages=[{"role": "user", "content": "via alias"}])
        assert raw.headers["x-switchboard-provider"] == "mock", raw.headers
        assert raw.parse().choices[0].message.content == "via alias"

    def temperature_zero_is_cached():
        def ask():
            return client.chat.completions.with_raw_response.create(
                model="mock/echo", temperature=0, messages=[{"role": "user", "content": "cache me"}])
        first, second = ask(), ask()
        assert first.headers["x-switchboard-cache"] in ("miss", "hit"), first.headers
        assert second.headers["x-switchboard-cache"] == "hit", second.headers
        parts = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="mock/echo", temperature=0, stream=True,
            messages=[{"role": "user", "content": "cache me"}]) if c.choices]
        assert "".join(parts) == "cache me", parts

    def canary_variant_is_reported():
        raw = client.chat.completions.with_raw_response.create(
            model="echo", messages=[{"role": "user", "content": "x"}])
        assert raw.headers["x-switchboard-variant"] in ("echo-canary=control", "echo-canary=candidate")

    def long_conversations_are_rejected():
        try:
            client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}] * 201)
        except openai.BadRequestError as e:
            assert "conversation too long" in str(e)
        else:
            raise AssertionError("expected BadRequestError")

    return [chat, chat_raw_headers, stream, models, embeddings, completions,
            unknown_model_is_not_found, bad_key_is_authentication_error,
            alias_falls_back_to_the_mock, temperature_zero_is_cached, canary_variant_is_reported,
            long_conversations_are_rejected]


def main():
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start(tmp)
        try:
            client = openai.OpenAI(base_url=base + "/v1", api_key="sk-sdk-admin", max_retries=0)
            passed = failed = 0
            for check in checks(client):
                try:
                    check()
                    passed += 1
                    print(f"ok    {check.__name__}")
                except Exception:
                    failed += 1
                    print(f"FAIL  {check.__name__}")
                    traceback.print_exc()
            print(f"{passed} passed, {failed} failed")
            return 1 if failed else 0
        finally:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
