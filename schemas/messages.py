"""Chat messages, content parts and tools as OpenAI's Chat Completions API shapes them.

One schema serves the job API (`POST /v1/jobs`) and the OpenAI-compatible endpoint, and travels to the
providers unchanged: a message or tool field Kintsugi does not know (OpenAI adds them often) is kept
(`extra="allow"`) and reaches OpenAI-kind providers as it came.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class AsSent(BaseModel):
    """Keeps fields it does not declare, so they are forwarded rather than dropped.

    Serialized as sent: a declared field left unset is omitted rather than written as null, and one the app
    set to null stays null (an assistant turn's `content: null`). Temporal's payloads are this JSON, so the
    distinction survives the trip to the worker and the upstream gets the message the app wrote.
    """

    model_config = ConfigDict(extra="allow")

    # No return annotation: with one, pydantic would describe the serialized model by it (an opaque dict).
    @model_serializer(mode="wrap")
    def _as_sent(self, handler: SerializerFunctionWrapHandler):
        data = handler(self)
        if isinstance(data, dict):
            fields = type(self).model_fields
            for name in fields.keys() - self.model_fields_set:
                for key in (name, fields[name].alias):
                    if key is not None and data.get(key, ...) is None:
                        del data[key]
        return data


class TextPart(AsSent):
    type: Literal["text"]
    text: str


class ImageURL(AsSent):
    url: str = Field(min_length=1)
    """An https URL or a `data:` URL with the image inline."""
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(AsSent):
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudio(AsSent):
    data: str
    """Base64 audio."""
    format: str


class AudioPart(AsSent):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FileData(AsSent):
    file_id: str | None = None
    file_data: str | None = None
    filename: str | None = None


class FilePart(AsSent):
    type: Literal["file"]
    file: FileData


class RefusalPart(AsSent):
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[TextPart | ImagePart | AudioPart | FilePart | RefusalPart, Field(discriminator="type")]


class FunctionCall(AsSent):
    name: str
    arguments: str
    """JSON text, as the model wrote it (it may not parse: that is the app's to judge)."""


class ToolCall(AsSent):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(AsSent):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, max_length=64)
    tool_calls: list[ToolCall] | None = None
    """An assistant turn that called tools (its `content` may be null)."""
    tool_call_id: str | None = None
    """The call a `tool` message answers."""
    refusal: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> ChatMessage:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id")
        if self.role == "assistant":
            if self.content is None and not self.tool_calls and self.refusal is None:
                raise ValueError("an assistant message needs content, tool_calls or refusal")
        elif self.content is None:
            raise ValueError(f"a {self.role} message needs content")
        return self

    def text(self) -> str:
        """The message's text: the string content, or its text parts joined (images and audio count none)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content or [] if isinstance(part, TextPart))


class FunctionDefinition(AsSent):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(AsSent):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class TextFormat(AsSent):
    type: Literal["text"]


class JsonObjectFormat(AsSent):
    type: Literal["json_object"]


class JsonSchema(AsSent):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(extra="allow", populate_by_name=True, serialize_by_alias=True)


class JsonSchemaFormat(AsSent):
    type: Literal["json_schema"]
    json_schema: JsonSchema


ResponseFormat = Annotated[TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")]


class AssistantMessage(AsSent):
    """The message of one answer choice."""

    role: Literal["assistant"] = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    annotations: list[dict[str, Any]] | None = None
    audio: dict[str, Any] | None = None
