"""An OpenAI-shaped chat request as Anthropic's Messages API takes it.

- System and developer messages become the top-level `system` (in order, wherever they stood).
- Turns alternate user/assistant: consecutive messages of one side merge into one turn, and a `tool` message
  becomes a `tool_result` block of a user turn (results first, as Anthropic requires).
- Assistant `tool_calls` become `tool_use` blocks, their JSON `arguments` parsed into `input`.
- `image_url` parts become image blocks (`data:` URLs inline as base64, others by URL); `file` parts with
  `file_data` become document blocks; `cache_control` on a part or a tool is passed on.
- Tools become `{name, description, input_schema}`; `tool_choice` auto/none/required/named becomes
  auto/none/any/tool, and `parallel_tool_calls: false` becomes `disable_parallel_tool_use`.
- `max_completion_tokens` (else `max_tokens`, else `DEFAULT_MAX_TOKENS`: Anthropic requires one), `stop` as
  `stop_sequences`, `user` as `metadata.user_id`, `service_tier` auto/default as auto/standard_only.

What has no Anthropic equivalent never gets here: `domain.capabilities` keeps such requests off Anthropic
deployments. What is left that cannot be sent (a tool call whose arguments are not a JSON object) is refused
as `bad_request`, since no retry can fix it.
"""

from __future__ import annotations

import json
from typing import Any

from temporalio.exceptions import ApplicationError

from schemas.calls import CallModelInput
from schemas.errors import BAD_REQUEST
from schemas.messages import ChatMessage, FilePart, ImagePart, RefusalPart, TextPart, Tool

DEFAULT_MAX_TOKENS = 1024
"""Anthropic refuses a request without `max_tokens`; used when the job sets none."""
_SERVICE_TIERS = {"auto": "auto", "default": "standard_only"}
_PASSED_ON = "cache_control"
"""Anthropic's prompt-cache marker, which an app may put on a content part or a tool."""

Block = dict[str, Any]


def request_body(call: CallModelInput, *, stream: bool) -> dict[str, Any]:
    params = call.params
    system = [block for m in call.messages if m.role in ("system", "developer") for block in _blocks(m.content)]
    body: dict[str, Any] = {
        "model": call.deployment.model,
        "messages": _turns([m for m in call.messages if m.role not in ("system", "developer")]),
        "max_tokens": params.max_completion_tokens or params.max_tokens or DEFAULT_MAX_TOKENS,
    }
    if system:
        body["system"] = "\n\n".join(b["text"] for b in system) if all(_plain(b) for b in system) else system
    for name in ("temperature", "top_p"):
        if (value := getattr(params, name)) is not None:
            body[name] = value
    if params.stop:
        body["stop_sequences"] = params.stop
    if params.user:
        body["metadata"] = {"user_id": params.user}
    if params.service_tier in _SERVICE_TIERS:
        body["service_tier"] = _SERVICE_TIERS[params.service_tier]
    if params.tools:
        body["tools"] = [_tool(tool) for tool in params.tools]
        choice = _tool_choice(params.tool_choice, params.parallel_tool_calls)
        if choice is not None:
            body["tool_choice"] = choice
    if stream:
        body["stream"] = True
    return body


def _turns(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    turns: list[tuple[str, list[Block]]] = []
    for message in messages:
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _assistant_blocks(message) if role == "assistant" else _user_blocks(message)
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    return [{"role": role, "content": _content(role, blocks)} for role, blocks in turns]


def _content(role: str, blocks: list[Block]) -> str | list[Block]:
    if len(blocks) == 1 and _plain(blocks[0]):
        return str(blocks[0]["text"])
    if role == "user":  # tool results lead their turn
        blocks.sort(key=lambda block: block["type"] != "tool_result")
    return blocks


def _plain(block: Block) -> bool:
    return block.keys() == {"type", "text"}


def _user_blocks(message: ChatMessage) -> list[Block]:
    if message.role != "tool":
        return _blocks(message.content)
    result: Block = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    if isinstance(message.content, str):
        if message.content:
            result["content"] = message.content
    elif content := _blocks(message.content):
        result["content"] = content
    return [result]


def _assistant_blocks(message: ChatMessage) -> list[Block]:
    blocks = _blocks(message.content)
    if not blocks and message.refusal:
        blocks.append({"type": "text", "text": message.refusal})
    for call in message.tool_calls or []:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.function.name, "input": _input(call.function.arguments)}
        )
    return blocks


def _input(arguments: str) -> dict[str, Any]:
    if not arguments.strip():
        return {}  # some models write no arguments for a tool that takes none
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise _refuse(f"a tool call's arguments must be a JSON object for Anthropic, got {arguments[:100]!r}")
    return value


def _blocks(content: str | list[Any] | None) -> list[Block]:
    """A message's content as Anthropic blocks; empty text is left out (Anthropic refuses empty blocks)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        if isinstance(part, TextPart | RefusalPart):
            text = part.text if isinstance(part, TextPart) else part.refusal
            block: Block | None = {"type": "text", "text": text} if text else None
        elif isinstance(part, ImagePart):
            block = {"type": "image", "source": _source(part.image_url.url, default_type=None)}
        elif isinstance(part, FilePart) and part.file.file_data:
            block = {"type": "document", "source": _source(part.file.file_data, default_type="application/pdf")}
            if part.file.filename:
                block["title"] = part.file.filename
        else:
            raise _refuse(f"a {part.type!r} content part has no Anthropic equivalent")
        if block is not None:
            if part.model_extra and _PASSED_ON in part.model_extra:
                block[_PASSED_ON] = part.model_extra[_PASSED_ON]
            blocks.append(block)
    return blocks


def _source(url: str, *, default_type: str | None) -> Block:
    """A `data:` URL (or, for files, bare base64) inline as base64; anything else by URL."""
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header.removeprefix("data:").split(";")[0]
        if not header.endswith(";base64") or not media_type:
            raise _refuse("a data: URL must be base64 with a media type (data:<type>;base64,...)")
        return {"type": "base64", "media_type": media_type, "data": data}
    if default_type is not None:
        return {"type": "base64", "media_type": default_type, "data": url}
    return {"type": "url", "url": url}


def _tool(tool: Tool) -> Block:
    function = tool.function
    out: Block = {"name": function.name}
    if function.description:
        out["description"] = function.description
    out["input_schema"] = function.parameters or {"type": "object", "properties": {}}
    if tool.model_extra and _PASSED_ON in tool.model_extra:
        out[_PASSED_ON] = tool.model_extra[_PASSED_ON]
    return out


def _tool_choice(choice: str | dict[str, Any] | None, parallel: bool | None) -> Block | None:
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") if isinstance(choice.get("function"), dict) else None
        if not name:
            raise _refuse("tool_choice names no function")
        out: Block = {"type": "tool", "name": name}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "auto" or parallel is False:
        out = {"type": "auto"}
    else:
        return None  # Anthropic's default is auto
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


def _refuse(message: str) -> ApplicationError:
    return ApplicationError(f"cannot translate for Anthropic: {message}", type=BAD_REQUEST, non_retryable=True)
