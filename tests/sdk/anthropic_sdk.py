#!/usr/bin/env python3
"""The official `anthropic` Python SDK against a real gateway (`POST /v1/messages`).

Usage: python3 tests/sdk/anthropic_sdk.py [path/to/switchboard]   (default: target/debug/switchboard)
Starts the binary on port 0 in a temp folder with the shipped providers.d (the mock) plus an
OpenAI-kind and an Anthropic-kind provider on the small mock upstream of openai_sdk.py, runs the
checks and prints 'N passed, N failed'. Messages to the mock and to the OpenAI-kind provider are
translated by the gateway; to the Anthropic-kind provider they are passed through. Nothing
reaches the internet.
"""
import json
import os
import sys

import anthropic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from openai_sdk import run  # noqa: E402  (the shared mock upstream and runner)

WEATHER_TOOL = {"name": "get_weather", "description": "Weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


def checks(client, upstream):
    def create():
        m = client.messages.create(model="mock/echo", max_tokens=50,
                                   messages=[{"role": "user", "content": "hello anthropic sdk"}])
        assert m.type == "message" and m.role == "assistant", m
        assert m.content[0].type == "text" and m.content[0].text == "hello anthropic sdk", m
        assert m.stop_reason == "end_turn", m
        assert m.usage.output_tokens == 3 and m.usage.input_tokens == 3, m.usage

    def system_and_history():
        m = client.messages.create(
            model="mock/echo", max_tokens=50, system="You are terse.",
            messages=[{"role": "user", "content": "first"},
                      {"role": "assistant", "content": "ok"},
                      {"role": "user", "content": [{"type": "text", "text": "second question"}]}])
        assert m.content[0].text == "second question", m
        # system (3) + history (1 + 1) + the question (2)
        assert m.usage.input_tokens == 7, m.usage

    def stream():
        with client.messages.stream(model="mock/echo", max_tokens=50,
                                    messages=[{"role": "user", "content": "one two three four"}]) as s:
            parts = list(s.text_stream)
            final = s.get_final_message()
        assert "".join(parts) == "one two three four", parts
        assert final.content[0].text == "one two three four", final
        assert final.stop_reason == "end_turn" and final.usage.output_tokens == 4, final

    def tools_translated():
        m = client.messages.create(model="sdk-openai/sdk-openai-tools", max_tokens=100,
                                   tools=[WEATHER_TOOL], tool_choice={"type": "any"},
                                   messages=[{"role": "user", "content": "Weather in Paris?"}])
        assert m.stop_reason == "tool_use", m
        uses = [b for b in m.content if b.type == "tool_use"]
        assert len(uses) == 1 and uses[0].name == "get_weather" and uses[0].input == {"city": "Paris"}, m
        assert m.usage.cache_read_input_tokens == 20 and m.usage.input_tokens == 10, m.usage
        sent = upstream.last("/v1/chat/completions")["body"]
        assert sent["tools"][0]["function"]["parameters"] == WEATHER_TOOL["input_schema"], sent
        assert sent["tool_choice"] == "required", sent
        # The tool result goes back as a `tool` message.
        client.messages.create(
            model="sdk-openai/sdk-openai-tools", max_tokens=100, tools=[WEATHER_TOOL],
            messages=[{"role": "user", "content": "Weather in Paris?"},
                      {"role": "assistant", "content": [{"type": "tool_use", "id": uses[0].id,
                                                         "name": "get_weather", "input": {"city": "Paris"}}]},
                      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id,
                                                    "content": "sunny"}]}])
        sent = upstream.last("/v1/chat/completions")["body"]
        tool = [m for m in sent["messages"] if m["role"] == "tool"]
        assert tool and tool[0]["tool_call_id"] == uses[0].id and "sunny" in json.dumps(tool[0]), sent
        with client.messages.stream(model="sdk-openai/sdk-openai-tools", max_tokens=100,
                                    tools=[WEATHER_TOOL],
                                    messages=[{"role": "user", "content": "Weather?"}]) as s:
            final = s.get_final_message()
        uses = [b for b in final.content if b.type == "tool_use"]
        assert uses and uses[0].input == {"city": "Paris"}, final
        assert final.stop_reason == "tool_use", final

    def passthrough_to_anthropic():
        m = client.messages.create(
            model="sdk-anthropic/sdk-claude", max_tokens=100,
            thinking={"type": "enabled", "budget_tokens": 1024},
            system=[{"type": "text", "text": "Long context.", "cache_control": {"type": "ephemeral"}}],
            messages=[{"role": "user", "content": "Bonjour?"}],
            extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})
        assert [b.type for b in m.content] == ["thinking", "text"], m
        assert m.content[0].signature == "c2lnbmF0dXJl", m
        assert m.usage.cache_read_input_tokens == 30, m.usage
        sent = upstream.last("/anthropic/v1/messages")
        assert sent["body"]["model"] == "sdk-claude", sent
        assert sent["body"]["system"][0]["cache_control"] == {"type": "ephemeral"}, sent
        assert sent["body"]["thinking"]["budget_tokens"] == 1024, sent
        assert sent["headers"]["anthropic-beta"] == "interleaved-thinking-2025-05-14", sent
        assert sent["headers"]["x-api-key"] == "sk-mock-anthropic", sent
        with client.messages.stream(model="sdk-anthropic/sdk-claude", max_tokens=100,
                                    messages=[{"role": "user", "content": "Bonjour?"}]) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        assert text == "Bonjour from Anthropic", text
        assert final.content[0].type == "thinking" and final.content[0].signature == "c2lnbmF0dXJl", final

    def count_tokens():
        estimate = client.messages.count_tokens(model="mock/echo",
                                                messages=[{"role": "user", "content": "one two three four"}])
        assert estimate.input_tokens == 9, estimate
        exact = client.messages.count_tokens(model="sdk-anthropic/sdk-claude",
                                             messages=[{"role": "user", "content": "hi"}])
        assert exact.input_tokens == 42, exact

    def errors_are_anthropic_errors():
        try:
            client.messages.create(model="no-such-model", max_tokens=5,
                                   messages=[{"role": "user", "content": "x"}])
        except anthropic.NotFoundError as e:
            assert e.body["error"]["type"] == "not_found_error", e.body
        else:
            raise AssertionError("expected NotFoundError")
        bad = anthropic.Anthropic(base_url=str(client.base_url), api_key="wrong", max_retries=0)
        try:
            bad.messages.create(model="mock/echo", max_tokens=5, messages=[{"role": "user", "content": "x"}])
        except anthropic.AuthenticationError:
            pass
        else:
            raise AssertionError("expected AuthenticationError")

    return [create, system_and_history, stream, tools_translated, passthrough_to_anthropic,
            count_tokens, errors_are_anthropic_errors]


def main():
    # The SDK sends `x-api-key` and appends `/v1/messages` to the base URL.
    return run(lambda base: anthropic.Anthropic(base_url=base, api_key="sk-sdk-admin", max_retries=0),
               checks)


if __name__ == "__main__":
    sys.exit(main())
