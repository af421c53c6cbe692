"""`langgraph dev` on examples/langgraph.json, from the repository root as documented: both graphs
load, publish their schemas and run over the in-memory LangGraph server's HTTP API."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "What is 12 + 30?"  # a demo question the offline fake executor knows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("langgraph_api", reason="needs langgraph-cli[inmem] (a dev dependency)")
    cli = Path(sys.executable).with_name("langgraph")
    if not cli.is_file():
        pytest.skip("the langgraph CLI is not installed next to this interpreter")
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("FLOWSTEER_EXECUTOR", "FLOWSTEER_WORKFLOW", "FLOWSTEER_DIRECTOR")}
    env.update(LANGSMITH_TRACING="false", LANGGRAPH_CLI_NO_ANALYTICS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([str(cli), "dev", "--config", "examples/langgraph.json", "--no-browser",
                             "--no-reload", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ok", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"langgraph dev did not start:\n{proc.stdout.read()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_both_graphs_run_over_http_with_schemas_and_approval(server):
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    assistants = {a["graph_id"]: a["assistant_id"] for a in client.assistants.search()}
    assert set(assistants) == {"designed", "director"}
    schemas = client.assistants.get_schemas(assistants["designed"])
    assert set(schemas["input_schema"]["properties"]) == {"question", "task"}  # not the 12 state keys
    assert "answer" in schemas["output_schema"]["properties"]
    assert "question" in client.assistants.get_schemas(assistants["director"])["input_schema"]["properties"]

    thread = client.threads.create()
    result = client.runs.wait(thread["thread_id"], "designed", input={"question": QUESTION})
    assert result["answer"] == "42"

    # the director graph: design, interrupt for approval (the server's checkpointer keeps the thread),
    # resume over HTTP, answer
    thread = client.threads.create()
    paused = client.runs.wait(thread["thread_id"], "director", input={"question": QUESTION})
    (pending,) = paused["__interrupt__"]
    assert "Verify" in pending["value"]["workflow"]
    assert client.threads.get_state(thread["thread_id"])["next"] == ["flowsteer"]
    final = client.runs.wait(thread["thread_id"], "director", command={"resume": True})
    assert final["answer"] == "42" and final["status"]
    history = client.threads.get_history(thread["thread_id"])
    assert len(history) >= 2
