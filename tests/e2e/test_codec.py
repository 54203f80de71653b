"""The payload codec end to end (dev server, the API with its worker, the fake upstream): with a codec key, a job's
prompt and answer are nowhere in Temporal's history as the server stores it; the platform admin reads them back
through `/codec/decode`, and the job's trace still shows its call."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.client import Client

from ops.devserver import temporal_binary
from tests.support.harness import Harness, KintsugiFactory


@pytest.fixture
async def encrypted(make_kintsugi: KintsugiFactory, sqlite_url: str) -> AsyncIterator[Harness]:
    async with make_kintsugi(sqlite_url, codec_key=base64.b64encode(os.urandom(32)).decode()) as harness:
        yield harness


def payloads_of(node: Any) -> list[dict[str, Any]]:
    """Every payload object (`{"metadata": ..., "data": ...}`) in a history's proto JSON."""
    if isinstance(node, dict):
        if isinstance(node.get("metadata"), dict) and "encoding" in node["metadata"]:
            return [node]
        return [found for value in node.values() for found in payloads_of(value)]
    if isinstance(node, list):
        return [found for value in node for found in payloads_of(value)]
    return []


def readable(payloads: list[dict[str, Any]]) -> str:
    return "\n".join(base64.b64decode(p.get("data", "")).decode(errors="replace") for p in payloads)


async def test_history_holds_no_prompt_and_the_admin_decodes_it(encrypted: Harness, temporal: Client) -> None:
    prompt = f"the merger with Initech closes on Friday {uuid.uuid4().hex}"
    answer = f"noted, keeping it quiet {uuid.uuid4().hex}"
    encrypted.upstream.configure(encrypted.model("a"), content=answer)

    body = {"model": "primary", "messages": [{"role": "user", "content": prompt}], "metadata": {"team": "legal"}}
    job = (await encrypted.submit(body, wait=10)).json()
    assert job["status"] == "succeeded", job
    assert answer in json.dumps(job["result"])
    again = (await encrypted.http.get(f"/v1/jobs/{job['id']}", headers=encrypted.admin)).json()
    assert (again["result"], again["metadata"]) == (job["result"], {"team": "legal"})  # read back through the codec

    # As the server stores it: through the session's client, which has no codec.
    raw = (await temporal.get_workflow_handle(job["id"]).fetch_history()).to_json_dict()
    payloads = payloads_of(raw)
    for secret in (prompt, answer):
        assert secret not in json.dumps(raw)
        assert secret not in readable(payloads)

    decoded = await encrypted.http.post("/codec/decode", json={"payloads": payloads}, headers=encrypted.admin)
    assert decoded.status_code == 200, decoded.text
    assert prompt in readable(decoded.json()["payloads"])
    assert answer in readable(decoded.json()["payloads"])

    trace = await encrypted.http.get(f"/v1/jobs/{job['id']}/trace", headers=encrypted.admin)
    assert trace.status_code == 200, trace.text
    calls = [span for span in _spans(trace.json()["root"]) if span["attributes"].get("activity_type") == "call_model"]
    assert [call["attributes"].get("model") for call in calls] == [encrypted.model("a")]


async def test_the_temporal_cli_decodes_history_through_the_codec_endpoint(encrypted: Harness) -> None:
    prompt = f"quarterly numbers are down {uuid.uuid4().hex}"
    job = (
        await encrypted.submit({"model": "sim-1", "messages": [{"role": "user", "content": prompt}]}, wait=10)
    ).json()
    assert job["status"] == "succeeded", job

    async with encrypted.serve_http() as api_url:
        codec = ["--codec-endpoint", f"{api_url}/codec", "--codec-auth", encrypted.admin["Authorization"]]
        decoded = await _workflow_show(encrypted, job["id"], *codec)
        raw = await _workflow_show(encrypted, job["id"])

    assert prompt in decoded
    assert prompt not in raw


async def _workflow_show(kintsugi: Harness, workflow_id: str, *options: str) -> str:
    """The payloads of `temporal workflow show -o json` as text: what an operator reads with the CLI."""
    process = await asyncio.create_subprocess_exec(
        temporal_binary(), "workflow", "show", "-w", workflow_id, "-o", "json",
        "--address", kintsugi.settings.temporal_address, *options,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return readable(payloads_of(json.loads(out)))


def _spans(span: dict[str, Any]) -> list[dict[str, Any]]:
    return [span, *(found for child in span.get("children", []) for found in _spans(child))]
