#!/usr/bin/env python3
"""The official `openai` Python SDK against a real gateway serving the shipped mock provider.

Usage: python3 tests/sdk/openai_sdk.py [path/to/switchboard]   (default: target/debug/switchboard)
Starts the binary on port 0 in a temp folder, runs the checks, prints 'N passed, N failed'.

Besides the shipped providers.d (copied to the temp folder), the gateway serves an openai, an
azure and a gemini provider pointed at a small mock upstream this script starts on 127.0.0.1
port 0, so the SDK's embeddings (base64 by default) are checked for every kind that has them.
Nothing reaches the internet: the gateway gets no `*_API_KEY` variables, so the presets stay
skipped.
"""
import base64
import http.server
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import openai

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "switchboard")


def vector(text):
    """The mock upstream's embedding of `text`: values float32 holds exactly."""
    return [float(len(text)), 0.5, -0.25, 0.125]


class Upstream(http.server.ThreadingHTTPServer):
    """One mock upstream for three wire formats, told apart by path; it records every request.

    - `POST /v1/embeddings` (openai) and `POST /openai/deployments/{d}/embeddings` (azure):
      floats, or base64 of float32 little-endian values when asked, as OpenAI answers;
    - `POST /v1beta/models/{m}:batchEmbedContents` (gemini): Gemini's `{"embeddings": [...]}`.
    """

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), UpstreamHandler)
        self.received = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def origin(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def last(self, path_part):
        return [r for r in self.received if path_part in r["path"]][-1]


class UpstreamHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"null")
        path, _, query = self.path.partition("?")
        self.server.received.append(
            {"path": path, "query": query, "headers": {k.lower(): v for k, v in self.headers.items()},
             "body": body})
        if path == "/v1/embeddings" or re.fullmatch(r"/openai/deployments/[^/]+/embeddings", path):
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            base64_asked = body.get("encoding_format") == "base64"

            def encode(values):
                if base64_asked:
                    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
                return values
            self.reply(200, {
                "object": "list", "model": body.get("model", "deployment"),
                "data": [{"object": "embedding", "index": i, "embedding": encode(vector(t))}
                         for i, t in enumerate(inputs)],
                "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)},
            })
        elif path == "/v1/chat/completions":
            self.chat(body)
        elif path == "/anthropic/v1/messages":
            self.anthropic(body)
        elif path == "/anthropic/v1/messages/count_tokens":
            self.reply(200, {"input_tokens": 42})
        elif re.fullmatch(r"/v1beta/models/[^/]+:batchEmbedContents", path):
            self.reply(200, {"embeddings": [{"values": vector(r["content"]["parts"][0]["text"])}
                                            for r in body["requests"]]})
        else:
            self.reply(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    def chat(self, body):
        """An OpenAI upstream that calls a tool: `get_weather` for Paris."""
        call = {"id": "call_sdk1", "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}
        usage = {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39,
                 "prompt_tokens_details": {"cached_tokens": 20}}
        if not body.get("stream"):
            self.reply(200, {"id": "chatcmpl-sdk", "object": "chat.completion", "created": 1,
                             "model": body["model"], "usage": usage,
                             "choices": [{"index": 0, "finish_reason": "tool_calls",
                                          "message": {"role": "assistant", "content": None,
                                                      "tool_calls": [call]}}]})
            return
        base = {"id": "chatcmpl-sdk", "object": "chat.completion.chunk", "created": 1,
                "model": body["model"]}
        args = call["function"]["arguments"]
        chunks = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
                {"index": 0, "id": call["id"], "type": "function",
                 "function": {"name": "get_weather", "arguments": ""}}]}, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"arguments": args[:7]}}]}, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"arguments": args[7:]}}]}, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
            {**base, "choices": [], "usage": usage},
        ]
        self.sse([(None, c) for c in chunks] + [(None, "[DONE]")])

    def anthropic(self, body):
        """An Anthropic upstream that thinks, then answers."""
        usage = {"input_tokens": 12, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 0,
                 "output_tokens": 5}
        content = [{"type": "thinking", "thinking": "Easy.", "signature": "c2lnbmF0dXJl"},
                   {"type": "text", "text": "Bonjour from Anthropic"}]
        if not body.get("stream"):
            self.reply(200, {"id": "msg_sdk", "type": "message", "role": "assistant",
                             "model": body["model"], "content": content, "stop_reason": "end_turn",
                             "stop_sequence": None, "usage": usage})
            return
        start = {"id": "msg_sdk", "type": "message", "role": "assistant", "model": body["model"],
                 "content": [], "stop_reason": None, "stop_sequence": None,
                 "usage": {**usage, "output_tokens": 1}}
        events = [
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "thinking", "thinking": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "thinking_delta", "thinking": "Easy."}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "signature_delta", "signature": "c2lnbmF0dXJl"}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("ping", {"type": "ping"}),
            ("content_block_start", {"type": "content_block_start", "index": 1,
                                     "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                     "delta": {"type": "text_delta", "text": "Bonjour "}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                     "delta": {"type": "text_delta", "text": "from Anthropic"}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 1}),
            ("message_delta", {"type": "message_delta",
                               "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": 5}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        self.sse(events)

    def sse(self, events):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        for name, payload in events:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            prefix = f"event: {name}\n" if name else ""
            self.wfile.write(f"{prefix}data: {data}\n\n".encode())
            self.wfile.flush()
        self.close_connection = True

    def reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def providers_dir(tmp, upstream):
    """The shipped providers.d plus one provider of each network kind on the mock upstream."""
    folder = os.path.join(tmp, "providers.d")
    shutil.copytree(os.path.join(ROOT, "providers.d"), folder)
    files = {
        "sdk-openai": f"kind: openai\nbase_url: {upstream.origin}/v1\napi_key: sk-mock-openai\n"
                      "models: [sdk-openai-embed, sdk-openai-tools]\n",
        "sdk-anthropic": f"kind: anthropic\nbase_url: {upstream.origin}/anthropic/v1\n"
                         "api_key: sk-mock-anthropic\nmodels: [sdk-claude]\n",
        "sdk-azure": f"kind: azure\nbase_url: {upstream.origin}\napi_key: mock-azure-key\n"
                     "api_version: 2024-10-21\n"
                     "models:\n  - name: sdk-azure-embed\n    upstream: embed-deployment\n",
        "sdk-gemini": f"kind: gemini\nbase_url: {upstream.origin}/v1beta\napi_key: mock-gemini-key\n"
                      "models: [sdk-gemini-embed]\n",
    }
    for name, yaml in files.items():
        with open(os.path.join(folder, name + ".yaml"), "w") as f:
            f.write(yaml)
    return folder


def start(tmp, providers):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(RUST_LOG="warn", SWITCHBOARD_ADMIN_KEY="sk-sdk-admin")
    proc = subprocess.Popen(
        [BINARY, "serve", "--listen", "127.0.0.1:0", "--data", os.path.join(tmp, "data"),
         "--providers", providers, "--policies", os.path.join(ROOT, "policies")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )
    for line in proc.stdout:
        if line.startswith("switchboard listening on "):
            return proc, line.split()[-1].strip()
    proc.kill()
    raise RuntimeError("the gateway exited before listening")


def as_float32(values):
    """`values` at float32 precision, as a base64 embedding carries them."""
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def checks(client, upstream):
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

    # The SDK asks for base64 by default and decodes it; each kind must answer it.
    def default_base64(model, inputs):
        raw = client.embeddings.with_raw_response.create(model=model, input=inputs)
        wire = raw.http_response.json()["data"]
        assert all(isinstance(d["embedding"], str) for d in wire), wire
        return [d.embedding for d in raw.parse().data]

    def embeddings_base64_mock():
        got = default_base64("text-embedding-mock", ["a", "b"])
        floats = client.embeddings.create(model="text-embedding-mock", input=["a", "b"],
                                          encoding_format="float")
        assert got == [as_float32(d.embedding) for d in floats.data], (got, floats)
        assert len(got[0]) == 8 and got[0] != got[1]

    def embeddings_base64_openai():
        got = default_base64("sdk-openai/sdk-openai-embed", ["hi", "there"])
        assert got == [vector("hi"), vector("there")], got
        sent = upstream.last("/v1/embeddings")
        assert sent["body"]["encoding_format"] == "base64", sent
        assert sent["headers"]["authorization"] == "Bearer sk-mock-openai"

    def embeddings_base64_azure():
        got = default_base64("sdk-azure/sdk-azure-embed", ["hi", "there"])
        assert got == [vector("hi"), vector("there")], got
        sent = upstream.last("/openai/deployments/embed-deployment/embeddings")
        assert sent["body"]["encoding_format"] == "base64", sent
        assert sent["query"] == "api-version=2024-10-21" and sent["headers"]["api-key"] == "mock-azure-key"

    def embeddings_base64_gemini():
        got = default_base64("sdk-gemini/sdk-gemini-embed", ["hi", "there"])
        assert got == [vector("hi"), vector("there")], got
        sent = upstream.last(":batchEmbedContents")
        assert sent["path"] == "/v1beta/models/sdk-gemini-embed:batchEmbedContents", sent
        assert "encoding_format" not in json.dumps(sent["body"]), sent
        floats = client.embeddings.create(model="sdk-gemini/sdk-gemini-embed", input="hi",
                                          encoding_format="float")
        assert floats.data[0].embedding == vector("hi"), floats

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
        first = ask()
        assert first.headers["x-switchboard-cache"] in ("miss", "hit"), first.headers
        # The reply is stored just after it is sent: ask again until it is there.
        for _ in range(100):
            second = ask()
            if second.headers["x-switchboard-cache"] == "hit":
                break
            time.sleep(0.02)
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

    # The Responses API (`client.responses`), over the mock and an OpenAI-kind upstream.
    def responses_plain():
        r = client.responses.create(model="mock/echo", input="hello responses", instructions="Be brief.")
        assert r.object == "response" and r.status == "completed", r
        assert r.output_text == "hello responses", r
        assert r.instructions == "Be brief."
        assert r.usage.output_tokens == 2, r.usage

    def responses_streamed():
        deltas = []
        final = None
        with client.responses.stream(model="mock/echo", input="one two three") as stream:
            for event in stream:
                if event.type == "response.output_text.delta":
                    deltas.append(event.delta)
            final = stream.get_final_response()
        assert "".join(deltas) == "one two three", deltas
        assert final.output_text == "one two three" and final.status == "completed", final
        # The raw iterator too, with its typed events.
        kinds = [e.type for e in client.responses.create(model="mock/echo", input="x", stream=True)]
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds

    def responses_previous_response_id():
        first = client.responses.create(model="mock/echo", input="remember this")
        second = client.responses.create(model="mock/echo", input="and this",
                                         previous_response_id=first.id)
        assert second.previous_response_id == first.id
        assert second.output_text == "and this"
        # The stored turn was sent first: 2 + 2 words before the new 2.
        assert second.usage.input_tokens == 6, second.usage
        assert client.responses.retrieve(first.id).output_text == "remember this"
        client.responses.delete(first.id)
        try:
            client.responses.retrieve(first.id)
        except openai.NotFoundError:
            pass
        else:
            raise AssertionError("a deleted response was still there")

    def responses_function_call():
        tools = [{"type": "function", "name": "get_weather", "description": "Weather",
                  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
        r = client.responses.create(model="sdk-openai/sdk-openai-tools", input="Weather in Paris?",
                                    tools=tools)
        calls = [o for o in r.output if o.type == "function_call"]
        assert len(calls) == 1 and calls[0].name == "get_weather", r.output
        assert json.loads(calls[0].arguments) == {"city": "Paris"}
        assert r.usage.input_tokens_details.cached_tokens == 20, r.usage
        sent = upstream.last("/v1/chat/completions")["body"]
        assert sent["tools"][0]["function"]["name"] == "get_weather", sent
        # The tool's result continues the conversation.
        follow = client.responses.create(
            model="mock/echo", previous_response_id=r.id,
            input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}])
        assert follow.status == "completed", follow
        with client.responses.stream(model="sdk-openai/sdk-openai-tools", input="Weather?",
                                     tools=tools) as stream:
            args = "".join(e.delta for e in stream if e.type == "response.function_call_arguments.delta")
            final = stream.get_final_response()
        assert json.loads(args) == {"city": "Paris"}, args
        assert [o.type for o in final.output] == ["function_call"], final.output

    def responses_unknown_previous_is_not_found():
        try:
            client.responses.create(model="mock/echo", input="x", previous_response_id="resp_nope")
        except openai.NotFoundError as e:
            assert "resp_nope" in str(e)
        else:
            raise AssertionError("expected NotFoundError")

    def batch_flow():
        lines = [{"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions",
                  "body": {"model": "mock/echo", "messages": [{"role": "user", "content": f"batch {i}"}]}}
                 for i in range(20)]
        lines.append({"custom_id": "no-such-model", "method": "POST", "url": "/v1/chat/completions",
                      "body": {"model": "nobody/none", "messages": [{"role": "user", "content": "x"}]}})
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        uploaded = client.files.create(file=("requests.jsonl", data), purpose="batch")
        assert uploaded.purpose == "batch" and uploaded.bytes == len(data), uploaded
        assert uploaded.id in [f.id for f in client.files.list()]
        assert client.files.retrieve(uploaded.id).filename == "requests.jsonl"
        assert client.files.content(uploaded.id).content == data
        batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                      completion_window="24h", metadata={"run": "sdk"})
        assert batch.status == "validating" and batch.metadata == {"run": "sdk"}, batch
        deadline = time.time() + 60
        while batch.status not in ("completed", "failed", "expired", "cancelled"):
            assert time.time() < deadline, batch
            time.sleep(0.1)
            batch = client.batches.retrieve(batch.id)
        assert batch.status == "completed", batch
        counts = batch.request_counts
        assert (counts.total, counts.completed, counts.failed) == (21, 20, 1), counts
        output = [json.loads(line) for line in client.files.content(batch.output_file_id).text.splitlines()]
        assert sorted(o["custom_id"] for o in output) == sorted(f"line-{i}" for i in range(20)), output
        for o in output:
            n = o["custom_id"].split("-")[1]
            assert o["response"]["status_code"] == 200, o
            assert o["response"]["body"]["choices"][0]["message"]["content"] == f"batch {n}", o
        errors = [json.loads(line) for line in client.files.content(batch.error_file_id).text.splitlines()]
        assert [e["custom_id"] for e in errors] == ["no-such-model"], errors
        assert errors[0]["response"]["status_code"] == 404, errors
        assert batch.id in [b.id for b in client.batches.list()]
        try:
            client.batches.cancel(batch.id)
        except openai.ConflictError:
            pass
        else:
            raise AssertionError("cancelling a completed batch should be a conflict")
        # Another key sees none of it.
        other = openai.OpenAI(base_url=client.base_url, api_key=new_user_key(client), max_retries=0)
        for call in (lambda: other.batches.retrieve(batch.id), lambda: other.files.retrieve(uploaded.id),
                     lambda: other.files.content(batch.output_file_id)):
            try:
                call()
            except openai.NotFoundError:
                pass
            else:
                raise AssertionError("another key could read a batch or a file")
        assert client.files.delete(uploaded.id).deleted

    def batch_cancelled():
        lines = [{"custom_id": f"c-{i}", "method": "POST", "url": "/v1/embeddings",
                  "body": {"model": "text-embedding-mock", "input": f"text {i}"}} for i in range(3000)]
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        uploaded = client.files.create(file=("embed.jsonl", data), purpose="batch")
        batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings",
                                      completion_window="24h")
        cancelled = client.batches.cancel(batch.id)
        assert cancelled.status in ("cancelling", "cancelled"), cancelled
        deadline = time.time() + 30
        while cancelled.status != "cancelled":
            assert time.time() < deadline, cancelled
            time.sleep(0.1)
            cancelled = client.batches.retrieve(batch.id)
        assert cancelled.request_counts.completed < 3000, cancelled

    return [chat, chat_raw_headers, stream, models, embeddings, embeddings_base64_mock,
            embeddings_base64_openai, embeddings_base64_azure, embeddings_base64_gemini, completions,
            unknown_model_is_not_found, bad_key_is_authentication_error,
            alias_falls_back_to_the_mock, temperature_zero_is_cached, canary_variant_is_reported,
            long_conversations_are_rejected, responses_plain, responses_streamed,
            responses_previous_response_id, responses_function_call,
            responses_unknown_previous_is_not_found, batch_flow, batch_cancelled]


def new_user_key(client):
    """A user key, made through the admin API with the admin key the client holds."""
    import urllib.request
    base = str(client.base_url).rstrip("/").removesuffix("/v1")
    req = urllib.request.Request(base + "/admin/keys", data=json.dumps({"name": "sdk-other"}).encode(),
                                 headers={"Authorization": f"Bearer {client.api_key}",
                                          "Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req) as res:
        return json.loads(res.read())["key"]


def run(make_client, checks):
    """Starts the mock upstream and the gateway, runs `checks(client, upstream)` with the
    client `make_client(base_url)` gives, prints each result; 1 if any failed."""
    with tempfile.TemporaryDirectory() as tmp:
        upstream = Upstream()
        proc, base = start(tmp, providers_dir(tmp, upstream))
        try:
            client = make_client(base)
            passed = failed = 0
            for check in checks(client, upstream):
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
            upstream.shutdown()


def main():
    return run(lambda base: openai.OpenAI(base_url=base + "/v1", api_key="sk-sdk-admin", max_retries=0),
               checks)


if __name__ == "__main__":
    sys.exit(main())
