"""A deterministic model that needs no API key and answers only from the conversation it is given.

The course uses it whenever ``OPENAI_API_KEY`` is unset, so every lesson runs offline and, more to the point,
so that *memory is visible*: the model has no state of its own. Each call it reads the input items the Runner
sends (the session's history followed by the new message) and answers from them alone. If the session did not
store a fact, the model cannot know it.

Rules, applied to the newest user message (matching is case-insensitive):

1. **Tool results.** If function-call outputs follow the newest user message, it reports them:
   ``"<tool> says: <output>"``.
2. **Handoffs.** If the agent can hand off and the message names the other agent (all words of its name but
   "agent", e.g. "billing" for "Billing agent"), it calls that handoff. The new agent then answers the same
   message from the same history (a handoff's own output is not reported as a tool result).
3. **Tool calls.** If the agent has function tools and the message names one (all words of the tool's name,
   ignoring ``get``/``lookup``/``fetch``/``find``/``check``, appear in the message, e.g. ``get_weather`` and
   "what's the weather in Paris?"), it calls that tool. String arguments are taken from the text after
   " in ", " for ", " of " or " about " (else the last word); number arguments from the first number.
4. **Facts it learns** from every user message in the history (later statements win):
   "my name is X", "call me X", "I'm X"/"I am X" (a capitalised name), "my <thing> is <value>",
   "I live in X", "I work at/as X", "I like/love X".
5. **Questions it answers** from those facts and the history:
   "what is my name?" / "who am I?", "what is my <thing>?", "where do I live?", "where/what do I work?",
   "what do I like?", "what do you know about me?" (every fact, plus the turn count),
   "how many messages/turns ...?", "what did I just say?", "what was my first message?".
   When the fact was never stated it says so plainly: "I don't know your name yet: you haven't told me."
6. **Summaries.** "Summarize the conversation" is answered with every fact in the user's own words
   ("The user told me: my name is Ada; I live in Paris."), and a ``system``/``developer`` message in the history
   (such as a summary written that way) is read for facts like a user message, so a summary carries facts
   forward (the course's ``SummarizingSession`` relies on both).
7. Otherwise it acknowledges facts just stated ("Nice to meet you, Ada!"), greets a greeting, or echoes the
   message, saying it is the offline model.

Usage is estimated as one token per four characters of input and output, one request per call, so usage
analytics have plausible, repeatable numbers. Both :meth:`get_response` and :meth:`stream_response` are
implemented; streaming emits the answer word by word as ``response.output_text.delta`` events.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from agents import FunctionTool, Model, ModelResponse, ModelSettings, ModelTracing, Tool, Usage
from agents.agent_output import AgentOutputSchemaBase
from agents.exceptions import UserError
from agents.handoffs import Handoff
from agents.items import TResponseInputItem, TResponseStreamEvent
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseFunctionToolCall,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseStatus,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    ResponseUsage,
)
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

MODEL_NAME = "offline-memory-model"
_TOOL_FILLER_WORDS = {"get", "lookup", "look", "up", "fetch", "find", "check", "tool"}
_END = r"(?=[.,!?;]|\s+and\s|\s+but\s|$)"


@dataclass
class Conversation:
    """What the model can see: the user's messages in order, the facts in them, and pending tool results."""

    user_messages: list[str] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    likes: list[str] = field(default_factory=list)
    tool_results: list[tuple[str, str]] = field(default_factory=list)  # (tool name, output) after last user

    @property
    def current(self) -> str:
        return self.user_messages[-1] if self.user_messages else ""

    @property
    def turn(self) -> int:
        return len(self.user_messages)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return " ".join(parts)
    return ""


def _clean(value: str) -> str:
    return value.strip().strip("\"'").strip()


def learn_facts(message: str, facts: dict[str, str], likes: list[str]) -> list[str]:
    """Record the facts stated in *message*; return a short description of each, for acknowledgement."""
    learned: list[str] = []
    if "?" in message:
        return learned  # a question states nothing
    for pattern in (r"\bmy name is ([^.,!?;]+?)" + _END, r"\bcall me ([^.,!?;]+?)" + _END,
                    r"\b[Ii](?:'m| am) ([A-Z][\w'-]*(?: [A-Z][\w'-]*)*)" + _END):
        found = re.search(pattern, message, flags=0 if "A-Z" in pattern else re.IGNORECASE)
        if found:
            facts["name"] = _clean(found.group(1))
            learned.append(f"name={facts['name']}")
            break
    for found in re.finditer(r"\bmy ([a-z][\w' -]*?) (?:is|are) ([^.,!?;]+?)" + _END, message, re.IGNORECASE):
        key = found.group(1).strip().lower()
        if key == "name":
            continue
        facts[key] = _clean(found.group(2))
        learned.append(f"{key}={facts[key]}")
    found = re.search(r"\bi live in ([^.,!?;]+?)" + _END, message, re.IGNORECASE)
    if found:
        facts["home"] = _clean(found.group(1))
        learned.append(f"home={facts['home']}")
    found = re.search(r"\bi work (at|as|for) ([^.,!?;]+?)" + _END, message, re.IGNORECASE)
    if found:
        facts["work"] = f"{found.group(1).lower()} {_clean(found.group(2))}"
        learned.append(f"work={facts['work']}")
    for found in re.finditer(r"\bi (?:really )?(?:like|love|enjoy) ([^.,!?;]+?)" + _END, message, re.IGNORECASE):
        thing = _clean(found.group(1))
        if thing.lower() not in (t.lower() for t in likes):
            likes.append(thing)
        learned.append(f"likes={thing}")
    return learned


def read_conversation(input: str | list[TResponseInputItem]) -> Conversation:
    """Collect user messages, facts and tool results from the Runner's input items."""
    conversation = Conversation()
    items: list[Any] = [{"role": "user", "content": input}] if isinstance(input, str) else list(input)
    call_names: dict[str, str] = {}
    for item in items:
        if not isinstance(item, dict):
            item = item.model_dump() if hasattr(item, "model_dump") else {}
        kind = item.get("type")
        if kind == "function_call":
            call_names[str(item.get("call_id"))] = str(item.get("name"))
        elif kind == "function_call_output":
            name = call_names.get(str(item.get("call_id")), "the tool")
            if not name.startswith(HANDOFF_PREFIX):  # a handoff's output is the Runner's, not news for the user
                conversation.tool_results.append((name, _text_of(item.get("output"))))
        elif item.get("role") == "user" and kind in (None, "message"):
            text = _text_of(item.get("content"))
            conversation.user_messages.append(text)
            conversation.tool_results.clear()
            learn_facts(text, conversation.facts, conversation.likes)
        elif item.get("role") in ("system", "developer") and kind in (None, "message"):
            learn_facts(_text_of(item.get("content")), conversation.facts, conversation.likes)  # e.g. a summary
    return conversation


HANDOFF_PREFIX = "transfer_to_"


def match_handoff(message: str, handoffs: Iterable[Handoff]) -> Handoff | None:
    """The handoff whose agent the message names, or None."""
    lowered = message.lower()
    for handoff in handoffs:
        words = [w for w in re.split(r"[_\W]+", handoff.agent_name.lower()) if w and w != "agent"]
        if words and all(re.search(rf"\b{re.escape(w)}\b", lowered) for w in words):
            return handoff
    return None


def _tool_words(name: str) -> list[str]:
    return [w for w in re.split(r"[_\W]+", name.lower()) if w and w not in _TOOL_FILLER_WORDS]


def _argument_text(message: str) -> str:
    found = re.search(r"\b(?:in|for|of|about)\s+([^?.!,;]+)", message, re.IGNORECASE)
    if found:
        return _clean(found.group(1))
    words = re.findall(r"[\w'-]+", message)
    return words[-1] if words else ""


def match_tool(message: str, tools: Iterable[Tool]) -> tuple[FunctionTool, dict[str, Any]] | None:
    """The function tool the message asks for, with arguments filled from the message, or None."""
    lowered = message.lower()
    for tool in tools:
        if not isinstance(tool, FunctionTool):
            continue
        words = _tool_words(tool.name)
        if not words or not all(re.search(rf"\b{re.escape(w)}", lowered) for w in words):
            continue
        properties: dict[str, Any] = tool.params_json_schema.get("properties", {})
        arguments: dict[str, Any] = {}
        for param, schema in properties.items():
            kind = schema.get("type")
            if kind in ("integer", "number"):
                number = re.search(r"-?\d+(?:\.\d+)?", message)
                if number:
                    value = float(number.group())
                    arguments[param] = int(value) if kind == "integer" else value
            elif kind == "boolean":
                arguments[param] = not re.search(r"\b(no|not|false)\b", lowered)
            else:
                arguments[param] = _argument_text(message)
        return tool, arguments
    return None


def _fact_answer(key: str, facts: dict[str, str], label: str | None = None) -> str:
    label = label or key
    if key in facts:
        return f"Your {label} is {facts[key]}."
    return f"I don't know your {label} yet: you haven't told me."


def _fact_phrases(conversation: Conversation, *, first_person: bool) -> list[str]:
    """Every fact as a phrase: "your name is Ada" for the reply, or "my name is Ada", as the user said it."""
    my, i = ("my", "I") if first_person else ("your", "you")
    facts = conversation.facts
    phrases = [f"{my} {key} is {value}" for key, value in facts.items() if key not in ("home", "work")]
    if "home" in facts:
        phrases.append(f"{i} live in {facts['home']}")
    if "work" in facts:
        phrases.append(f"{i} work {facts['work']}")
    if first_person:  # one statement per thing, so each reads back as a fact of its own
        phrases += [f"I like {thing}" for thing in conversation.likes]
    elif conversation.likes:
        phrases.append("you like " + ", ".join(conversation.likes))
    return phrases


def _summary(conversation: Conversation) -> str:
    known = _fact_phrases(conversation, first_person=False)
    turns = f"This is message {conversation.turn} from you in this conversation."
    if not known:
        return f"I don't know anything about you yet. {turns}"
    return "Here is what I know: " + "; ".join(known) + f". {turns}"


def summary_of_facts(conversation: Conversation) -> str:
    """The facts the user stated, in their own words, so a later read learns them again (rule 5)."""
    said = _fact_phrases(conversation, first_person=True)
    if not said:
        return "The user has not told me any facts yet."
    return "The user told me: " + "; ".join(said) + "."


def answer(conversation: Conversation) -> str:
    """The reply to the newest user message, following the rules in the module docstring."""
    if conversation.tool_results:
        return " ".join(f"{name} says: {output}" for name, output in conversation.tool_results)
    recalled = recall(conversation)
    if recalled is not None:
        return recalled
    message, facts = conversation.current, conversation.facts
    learned = learn_facts(message, {}, [])
    if learned:
        if any(item.startswith("name=") for item in learned):
            return f"Nice to meet you, {facts['name']}! I'll remember that."
        return "Got it, I'll remember that."
    if re.match(r"^(hi|hello|hey|good (morning|afternoon|evening))\b", message.lower().strip()):
        name = f", {facts['name']}" if "name" in facts else ""
        return f"Hello{name}! I'm the course's offline model. Tell me about yourself and ask me later."
    return f'(offline model) You said: "{message}". Tell me a fact, like "my name is Ada", and ask about it later.'


def recall(conversation: Conversation) -> str | None:
    """The answer to a question about the conversation itself (a fact, a like, an earlier message), or None."""
    lowered = conversation.current.lower().strip()
    facts = conversation.facts
    if re.search(r"\bsummari[sz]e\b", lowered):
        return summary_of_facts(conversation)
    if re.search(r"\b(what(?:'s| is) my name|who am i|do you (?:know|remember) my name)\b", lowered):
        return _fact_answer("name", facts)
    if re.search(r"\bwhere do i live\b", lowered):
        return f"You live in {facts['home']}." if "home" in facts else _fact_answer("home", facts, "home town")
    if re.search(r"\b(where|what) do i work\b|\bwhat(?:'s| is) my job\b", lowered):
        return f"You work {facts['work']}." if "work" in facts else "I don't know where you work yet."
    if re.search(r"\bwhat do i (?:like|love|enjoy)\b", lowered):
        if conversation.likes:
            return "You like " + ", ".join(conversation.likes) + "."
        return "I don't know what you like yet: you haven't told me."
    if re.search(r"\bwhat do you (?:know|remember)\b", lowered):
        return _summary(conversation)
    return recall_messages(conversation, lowered)


def recall_messages(conversation: Conversation, lowered: str) -> str | None:
    """The answer to a question about the user's earlier messages, or about a fact by its name, or None."""
    earlier = conversation.user_messages[:-1]
    if re.search(r"\bhow many (?:messages|turns|questions)\b", lowered):
        return (f"This is message {conversation.turn} from you; "
                f"you sent {len(earlier)} before it in this conversation.")
    if re.search(r"\bwhat did i (?:just )?(?:say|ask)\b|\bmy (?:last|previous) (?:message|question)\b", lowered):
        return f'You said: "{earlier[-1]}"' if earlier else "This is your first message to me."
    if re.search(r"\bmy first (?:message|question)\b", lowered):
        return f'Your first message was: "{earlier[0]}"' if earlier else "This is your first message to me."
    asked = re.search(r"\bwhat(?:'s| is| are) my ([a-z][\w' -]*?)\s*\?*$", lowered)
    if asked:
        return _fact_answer(asked.group(1).strip(), conversation.facts)
    return None


def estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def _input_text(system_instructions: str | None, input: str | list[TResponseInputItem]) -> str:
    if isinstance(input, str):
        return (system_instructions or "") + input
    return (system_instructions or "") + json.dumps(input, default=str)


class OfflineModel(Model):
    """The course's offline model: see the module docstring for the rules it answers by."""

    def __init__(self) -> None:
        self._calls = 0

    def _respond(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff] | None = None,
    ) -> tuple[list[Any], Usage]:
        if output_schema is not None and not output_schema.is_plain_text():
            raise UserError(
                "The offline model answers in plain text only; this agent asks for structured output. "
                "Set OPENAI_API_KEY to run it with a real model."
            )
        self._calls += 1
        conversation = read_conversation(input)
        handoff = None if conversation.tool_results else match_handoff(conversation.current, handoffs or [])
        tool_call = None if conversation.tool_results or handoff else match_tool(conversation.current, tools)
        output: list[Any]
        if handoff is not None:
            output = [ResponseFunctionToolCall(id=f"fc_offline_{self._calls}", call_id=f"call_offline_{self._calls}",
                                               type="function_call", name=handoff.tool_name, arguments="{}",
                                               status="completed")]
            output_tokens = estimate_tokens(handoff.tool_name)
        elif tool_call is not None:
            tool, arguments = tool_call
            call_id = f"call_offline_{self._calls}"
            arguments_json = json.dumps(arguments)
            output = [ResponseFunctionToolCall(id=f"fc_offline_{self._calls}", call_id=call_id,
                                               type="function_call", name=tool.name, arguments=arguments_json,
                                               status="completed")]
            output_tokens = estimate_tokens(tool.name + arguments_json)
        else:
            reply = answer(conversation)
            output = [self._message(reply)]
            output_tokens = estimate_tokens(reply)
        input_tokens = estimate_tokens(_input_text(system_instructions, input))
        usage = Usage(requests=1, input_tokens=input_tokens, output_tokens=output_tokens,
                      total_tokens=input_tokens + output_tokens)
        return output, usage

    def _message(self, text: str) -> ResponseOutputMessage:
        return ResponseOutputMessage(
            id=f"msg_offline_{self._calls}", type="message", role="assistant", status="completed",
            content=[ResponseOutputText(type="output_text", text=text, annotations=[], logprobs=[])],
        )

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: Any | None = None,
    ) -> ModelResponse:
        output, usage = self._respond(system_instructions, input, tools, output_schema, handoffs)
        return ModelResponse(output=output, usage=usage, response_id=None)

    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: Any | None = None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        output, usage = self._respond(system_instructions, input, tools, output_schema, handoffs)
        sequence = itertools.count()  # every event's sequence_number, in the order they are sent

        def response(items: list[Any], status: ResponseStatus, with_usage: bool) -> Response:
            return Response(
                id=f"resp_offline_{self._calls}", created_at=0, model=MODEL_NAME, object="response",
                output=items, tool_choice="auto", tools=[], parallel_tool_calls=False, status=status,
                usage=ResponseUsage(
                    input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                    total_tokens=usage.total_tokens,
                    input_tokens_details=InputTokensDetails(cached_tokens=0, cache_write_tokens=0),
                    output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
                ) if with_usage else None,
            )

        yield ResponseCreatedEvent(type="response.created", response=response([], "in_progress", False),
                                   sequence_number=next(sequence))
        for index, item in enumerate(output):
            if isinstance(item, ResponseOutputMessage):
                for event in _message_events(item, index, sequence):
                    yield event
            else:
                yield ResponseOutputItemAddedEvent(type="response.output_item.added", item=item,
                                                   output_index=index, sequence_number=next(sequence))
            yield ResponseOutputItemDoneEvent(type="response.output_item.done", item=item, output_index=index,
                                              sequence_number=next(sequence))
        yield ResponseCompletedEvent(type="response.completed", response=response(output, "completed", True),
                                     sequence_number=next(sequence))


def _message_events(item: ResponseOutputMessage, index: int,
                    sequence: Iterator[int]) -> Iterator[TResponseStreamEvent]:
    """A message streamed as OpenAI streams one: added empty, then its text word by word, then done."""
    text = item.content[0].text  # type: ignore[union-attr]
    empty = item.model_copy(update={"content": [], "status": "in_progress"})
    yield ResponseOutputItemAddedEvent(type="response.output_item.added", item=empty,
                                       output_index=index, sequence_number=next(sequence))
    part = ResponseOutputText(type="output_text", text="", annotations=[], logprobs=[])
    yield ResponseContentPartAddedEvent(type="response.content_part.added", item_id=item.id,
                                        output_index=index, content_index=0, part=part,
                                        sequence_number=next(sequence))
    for delta in re.findall(r"\S+\s*|\s+", text):
        yield ResponseTextDeltaEvent(type="response.output_text.delta", item_id=item.id,
                                     output_index=index, content_index=0, delta=delta, logprobs=[],
                                     sequence_number=next(sequence))
    yield ResponseTextDoneEvent(type="response.output_text.done", item_id=item.id,
                                output_index=index, content_index=0, text=text, logprobs=[],
                                sequence_number=next(sequence))
    yield ResponseContentPartDoneEvent(type="response.content_part.done", item_id=item.id,
                                       output_index=index, content_index=0,
                                       part=item.content[0],
                                       sequence_number=next(sequence))
