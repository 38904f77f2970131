"""The scripted Messages API server against the real ``anthropic`` SDK (and raw HTTP for the wire format)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any, cast

import anthropic
import pytest

from agent_fleet_mcp.testing import ApiError, Reply, ScriptedModelServer, ToolCall, Turn, When, wire

USER: list[anthropic.types.MessageParam] = [{"role": "user", "content": "hi"}]
TOOLS: list[Any] = [
    {"name": "read_file", "description": "read", "input_schema": {"type": "object", "properties": {"path": {}}}}
]


@pytest.fixture
def srv() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer() as server:
        yield server


@pytest.fixture
def client(srv: ScriptedModelServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=srv.base_url, api_key="test", max_retries=0) as c:
        yield c


def create(client: anthropic.Anthropic, **kwargs: Any) -> anthropic.types.Message:
    kwargs.setdefault("messages", USER)
    # **kwargs hides `stream` from the overloads; no caller passes stream=True, so this is a Message
    return cast(anthropic.types.Message, client.messages.create(model="claude-test", max_tokens=1000, **kwargs))


def post_raw(srv: ScriptedModelServer, path: str, body: Any) -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(
        srv.base_url + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), err.read().decode()


def test_non_streaming_reply(srv: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    srv.add(Reply("Hello there, fleet."))
    msg = create(client)
    assert msg.content[0].type == "text" and msg.content[0].text == "Hello there, fleet."
    assert msg.stop_reason == "end_turn" and msg.model == "claude-test" and msg.id.startswith("msg_")
    assert msg.usage.input_tokens == wire.input_tokens({"messages": USER}) > 0
    assert msg.usage.output_tokens == len("Hello there, fleet.") // 4
    assert msg.usage.cache_read_input_tokens == 0 and msg.usage.cache_creation_input_tokens == 0
    srv.assert_complete()


def test_stream_text_event_sequence(srv: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    text = "A reasonably long answer that the server splits into several text deltas for the stream."
    srv.add(text)
    with client.messages.stream(model="m", max_tokens=100, messages=USER) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds.count("content_block_delta") > 1 and "message_delta" in kinds
    assert final.content[0].type == "text" and final.content[0].text == text
    assert final.usage.output_tokens == len(text) // 4


def test_stream_tool_use_input_is_parsed(srv: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    args = {"path": "src/app.py", "start_line": 3, "nested": {"a": [1, 2, "three"]}}
    srv.add(ToolCall("read_file", args, text="Let me read it."))
    with client.messages.stream(model="m", max_tokens=100, messages=USER, tools=TOOLS) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["text", "tool_use"]
    tool = final.content[1]
    assert tool.type == "tool_use" and tool.name == "read_file" and tool.input == args
    assert tool.id.startswith("toolu_")


def test_list_step_is_one_message_with_parallel_tool_calls(
    srv: ScriptedModelServer, client: anthropic.Anthropic
) -> None:
    srv.add([Reply("Reading both."), ToolCall("read_file", {"path": "a"}), ToolCall("read_file", {"path": "b"})])
    srv.add(Turn(["just text", "more text"], usage={"output_tokens": 42}))
    with client.messages.stream(model="m", max_tokens=100, messages=USER, tools=TOOLS) as stream:
        first = stream.get_final_message()
    assert [b.type for b in first.content] == ["text", "tool_use", "tool_use"]
    assert first.stop_reason == "tool_use"
    ids = {b.id for b in first.content if b.type == "tool_use"}
    assert len(ids) == 2
    second = create(client)
    assert second.stop_reason == "end_turn" and len(second.content) == 2 and second.usage.output_tokens == 42


def test_count_tokens_does_not_consume(srv: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    srv.add("unused")
    counted = client.messages.count_tokens(model="m", messages=USER, tools=TOOLS)
    assert counted.input_tokens == wire.input_tokens({"messages": USER, "tools": TOOLS})
    assert len(srv.remaining) == 1


def test_rate_limit_is_retried_then_raised(srv: ScriptedModelServer) -> None:
    srv.extend([ApiError(429, retry_after=0.01), ApiError(429, message="slow down", retry_after=0.01)])
    with (
        anthropic.Anthropic(base_url=srv.base_url, api_key="test", max_retries=1) as c,
        pytest.raises(anthropic.RateLimitError) as info,
    ):
        create(c)
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "0.01"
    assert info.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
        "request_id": info.value.response.headers["request-id"],
    }
    assert len(srv.requests) == 2
    srv.assert_complete()


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (529, anthropic.OverloadedError),
        (500, anthropic.InternalServerError),
        (401, anthropic.AuthenticationError),
    ],
)
def test_error_statuses_map_to_sdk_exceptions(
    srv: ScriptedModelServer, client: anthropic.Anthropic, status: int, exc: type[Exception]
) -> None:
    srv.add(ApiError(status))
    with pytest.raises(exc) as info:
        create(client)
    body = info.value.body  # type: ignore[attr-defined]
    assert body["error"]["type"] == {529: "overloaded_error", 500: "api_error", 401: "authentication_error"}[status]


def test_overloaded_is_an_internal_server_error() -> None:
    assert issubclass(anthropic.OverloadedError, anthropic.InternalServerError)


def test_mid_stream_error_surfaces(srv: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    srv.add(ApiError(529, mid_stream=True, partial_text="Half an ans"))
    seen: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError, match="overloaded_error"),
        client.messages.stream(model="m", max_tokens=100, messages=USER) as stream,
    ):
        seen.extend(stream.text_stream)
    assert "".join(seen) == "Half an ans"


def test_mid_stream_error_on_non_streaming_request_is_http_error(
    srv: ScriptedModelServer, client: anthropic.Anthropic
) -> None:
    srv.add(ApiError(529, mid_stream=True))
    with pytest.raises(anthropic.OverloadedError):
        create(client)


def test_system_role_entries_are_skipped(srv: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    messages: Any = [{"role": "system", "content": "x" * 4000}, *USER]
    msg = create(client, messages=messages)
    assert msg.usage.input_tokens == wire.input_tokens({"messages": USER})
    assert msg.content[0].type == "text" and "hi" in msg.content[0].text  # default policy answered the user


def test_requests_are_recorded_and_query_ignored(srv: ScriptedModelServer) -> None:
    status, headers, text = post_raw(
        srv, "/v1/messages?beta=true", {"model": "m", "max_tokens": 5, "messages": USER, "stream": True}
    )
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    names = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("event: ")]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta", "message_stop"]
    for line in text.splitlines():
        if line.startswith("data: "):
            json.loads(line[6:])
    [rec] = srv.requests
    assert (rec.method, rec.path, rec.query) == ("POST", "/v1/messages", "beta=true")
    assert rec.body["stream"] is True and rec.headers["content-type"] == "application/json"
    assert rec.ts <= time.time()


def test_sdk_headers_recorded(srv: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    create(client)
    [rec] = srv.message_requests
    auth = rec.headers.get("x-api-key") or rec.headers["authorization"]  # SDK 2.x sends a bearer token
    assert auth.endswith("test") and "anthropic-version" in rec.headers
    assert rec.body["model"] == "claude-test"


def test_unknown_routes_are_404_json(srv: ScriptedModelServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(srv.base_url + "/v1/models", timeout=5)
    with info.value as err:
        assert err.code == 404
        assert json.loads(err.read())["error"]["type"] == "not_found_error"
    status, _, text = post_raw(srv, "/v1/complete", {})
    assert status == 404 and json.loads(text)["type"] == "error"


def test_a_body_that_is_not_a_json_object_is_a_400(srv: ScriptedModelServer) -> None:
    for body in ([{"role": "user"}], "hi", None):
        status, _, text = post_raw(srv, "/v1/messages", body)
        assert status == 400 and json.loads(text)["error"] == {
            "type": "invalid_request_error", "message": "request body must be a JSON object"
        }  # fmt: skip
    status, _, text = post_raw(srv, "/v1/messages/count_tokens", {})  # an empty object is still an object
    assert status == 200 and json.loads(text)["input_tokens"] >= 1


def test_assert_complete(srv: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    srv.extend(["one", "two", When(lambda body: False, "never", times=None)])
    create(client)
    with pytest.raises(AssertionError, match="1 scripted step"):
        srv.assert_complete()
    create(client)
    srv.assert_complete()  # the persistent rule does not count


def test_when_rules_match_out_of_order(srv: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    def no_tools(body: dict[str, Any]) -> bool:
        return not body.get("tools")

    srv.extend([ToolCall("read_file", {"path": "a"}), When(no_tools, "side answer", times=2)])
    first = create(client)
    second = create(client, tools=TOOLS)
    third = create(client)
    assert [first.content[0].type, second.content[0].type] == ["text", "tool_use"]
    assert first.content[0].type == "text" and first.content[0].text == "side answer"
    assert third.content[0].type == "text" and third.content[0].text == "side answer"
    srv.assert_complete()


def test_callable_step_sees_the_body(srv: ScriptedModelServer, client: anthropic.Anthropic) -> None:
    srv.add(lambda body: Reply(f"{len(body['messages'])} message(s)"))
    msg = create(client)
    assert msg.content[0].type == "text" and msg.content[0].text == "1 message(s)"


def test_exhausted_script_without_default_policy() -> None:
    with (
        ScriptedModelServer(["only"], default_policy=False) as srv,
        anthropic.Anthropic(base_url=srv.base_url, api_key="t", max_retries=0) as c,
    ):
        assert create(c).content[0].text == "only"  # type: ignore[union-attr]
        assert "exhausted" in create(c).content[0].text  # type: ignore[union-attr]


def test_usage_overrides_for_cache_math() -> None:
    usage = {"cache_read_input_tokens": 100}
    with (
        ScriptedModelServer([Reply("x", usage={"cache_creation_input_tokens": 7})], usage=usage) as srv,
        anthropic.Anthropic(base_url=srv.base_url, api_key="t", max_retries=0) as c,
        c.messages.stream(model="m", max_tokens=10, messages=USER) as stream,
    ):
        final = stream.get_final_message()
    assert final.usage.cache_read_input_tokens == 100 and final.usage.cache_creation_input_tokens == 7
    assert final.usage.output_tokens == 1


def test_wait_for_requests_and_latency() -> None:
    with (
        ScriptedModelServer(["slow"], latency_s=0.2) as srv,
        anthropic.Anthropic(base_url=srv.base_url, api_key="t", max_retries=0) as c,
    ):
        results: list[float] = []

        def call() -> None:
            start = time.monotonic()
            create(c)
            results.append(time.monotonic() - start)

        worker = threading.Thread(target=call)
        worker.start()
        assert srv.wait_for_requests(1, timeout=5)
        assert not srv.wait_for_requests(2, timeout=0.05)
        worker.join(timeout=5)
    assert results and results[0] >= 0.2


def test_async_client_streams() -> None:
    async def main(base_url: str) -> str:
        async with (
            anthropic.AsyncAnthropic(base_url=base_url, api_key="t", max_retries=0) as c,
            c.messages.stream(model="m", max_tokens=10, messages=USER) as stream,
        ):
            return "".join([t async for t in stream.text_stream])

    with ScriptedModelServer(["async hello"]) as srv:
        assert asyncio.run(main(srv.base_url)) == "async hello"


def test_stop_with_idle_keep_alive_connection_is_prompt() -> None:
    srv = ScriptedModelServer(["a"]).start()
    with anthropic.Anthropic(base_url=srv.base_url, api_key="t", max_retries=0) as c:
        create(c)
        start = time.monotonic()
        srv.stop()  # the client still holds its pooled connection open
        assert time.monotonic() - start < 2
    srv.stop()  # idempotent


def test_event_delay_spaces_the_stream() -> None:
    with (
        ScriptedModelServer(["spaced out"], event_delay_s=0.01) as srv,
        anthropic.Anthropic(base_url=srv.base_url, api_key="t", max_retries=0) as c,
        c.messages.stream(model="m", max_tokens=10, messages=USER) as stream,
    ):
        start = time.monotonic()
        assert stream.get_final_message().content[0].text == "spaced out"  # type: ignore[union-attr]
        assert time.monotonic() - start >= 0.05


def test_run_standalone_serves_until_interrupted() -> None:
    code = "from agent_fleet_mcp.testing import run_standalone; run_standalone()"
    with subprocess.Popen(
        [sys.executable, "-c", code], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line
        req = urllib.request.Request(
            url.group(0) + "/v1/messages",
            data=json.dumps({"model": "m", "max_tokens": 50, "messages": USER}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert json.loads(resp.read())["type"] == "message"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and out == ""  # stdout stays clean


def test_side_requests_rule_keeps_the_script_for_tool_requests(
    srv: ScriptedModelServer, client: anthropic.Anthropic
) -> None:
    srv.extend([When.no_tools(), ToolCall("read_file", {"path": "a"})])
    side = create(client, messages=[{"role": "user", "content": "Generate a title for: fix the parser"}])
    main = create(client, tools=TOOLS)
    assert side.content[0].type == "text" and "parser" in side.content[0].text  # default policy answered
    assert main.content[0].type == "tool_use"
    srv.assert_complete()


def test_standalone_server_says_a_dummy_key_is_needed() -> None:
    """`agent-fleet scripted-model` tells the user both variables; following it makes a real client request work."""
    import os

    code = "from agent_fleet_mcp.cli import main; main()"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    with subprocess.Popen(
        [sys.executable, "-c", code, "scripted-model"], stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        try:
            assert proc.stderr is not None
            lines: list[str] = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any("Ctrl-C" in ln for ln in lines):
                line = proc.stderr.readline()
                if not line:
                    break
                lines.append(line)
            [export] = [ln.strip() for ln in lines if ln.strip().startswith("export ")]
            assert "ANTHROPIC_API_KEY=dummy" in export, lines
            url = export.split("ANTHROPIC_BASE_URL=", 1)[1].split()[0]
            with anthropic.Anthropic(base_url=url, api_key="dummy", max_retries=0) as client:
                reply = client.messages.create(model="claude-sonnet-5-5", max_tokens=50, messages=USER)  # type: ignore[arg-type]
            assert reply.content
        finally:
            proc.terminate()
