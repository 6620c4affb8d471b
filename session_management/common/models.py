"""Which model a lesson talks to: a real one when configured, otherwise the offline model.

* ``OPENAI_API_KEY`` unset -> :class:`~.offline_model.OfflineModel`, with tracing disabled, so nothing
  touches the network.
* ``OPENAI_API_KEY`` set -> OpenAI's Responses API with ``OPENAI_MODEL`` (default: the SDK's default model).
* ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` set -> any OpenAI-compatible server (Gemini, Ollama, vLLM, ...)
  through the Chat Completions API; ``OPENAI_MODEL`` is then required. Tracing is disabled, because traces
  are uploaded to OpenAI with the same key, which another provider's key cannot do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from agents import Model, OpenAIChatCompletionsModel, set_tracing_disabled
from openai import AsyncOpenAI

from .errors import CourseError
from .offline_model import MODEL_NAME, OfflineModel
from .settings import load_env


@dataclass(frozen=True)
class ModelChoice:
    model: str | Model | None  # None: let the SDK use its default model
    description: str
    offline: bool


def choose_model() -> ModelChoice:
    """Pick the lesson's model from the environment (and `.env`)."""
    load_env()
    api_key = os.environ.get("OPENAI_API_KEY", "").strip()
    model_name = os.environ.get("OPENAI_MODEL", "").strip() or None
    base_url = os.environ.get("OPENAI_BASE_URL", "").strip() or None
    if not api_key:
        set_tracing_disabled(True)
        return ModelChoice(OfflineModel(), f"{MODEL_NAME} (offline: OPENAI_API_KEY is not set)", True)
    if base_url:
        if model_name is None:
            raise CourseError(
                "OPENAI_BASE_URL is set but OPENAI_MODEL is not.",
                "set OPENAI_MODEL to the model name your provider serves (e.g. gemini-2.5-flash, llama3.2)",
            )
        set_tracing_disabled(True)
        client = AsyncOpenAI(api_key=api_key, base_url=base_url)
        model = OpenAIChatCompletionsModel(model=model_name, openai_client=client)
        return ModelChoice(model, f"{model_name} at {base_url} (Chat Completions)", False)
    return ModelChoice(model_name, f"{model_name or 'the SDK default model'} (OpenAI)", False)


def lesson_model() -> str | Model | None:
    """The model to pass as ``Agent(model=...)``; see :func:`choose_model` for the rules."""
    return choose_model().model
