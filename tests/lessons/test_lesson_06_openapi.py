"""Lesson 06's OpenAPI document is its contract: an OpenAPI fuzzer (schemathesis) checks the service against it.

The fuzzer reads ``/openapi.json`` from the app in process (ASGI, no server) and runs its phases: the schema's
examples, *coverage* (boundary values, each field missing or of the wrong type, every method the path does not
have), *fuzzing* (random valid and invalid requests) and *stateful* (create a conversation, then use its id in
the other routes, which it infers from the response models). Every answer is checked: no 500, its status is one
the document lists for that route, its body and headers match the documented schema (an SSE stream event by
event), valid requests are accepted, invalid ones rejected, and a 405 names the path's methods in ``Allow``.

To keep it fast and repeatable the run is bounded (``MAX_EXAMPLES`` per operation and phase) and seeded; raise
``MAX_EXAMPLES`` (or run ``st run`` against ``--serve``) to search longer. A failure lists each check that failed,
with the operation and schemathesis's own message (which says what it sent and what came back).
"""

from __future__ import annotations

import importlib
import re
from collections import Counter
from typing import Any

import pytest
import schemathesis
from pydantic import ValidationError
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema
from schemathesis.python import asgi

from session_management.common import OfflineModel
from tests.support.web_service import ALICE, USERS, app_module, auth, new_conversation, service

dependencies = importlib.import_module("session_management.06_web_service.dependencies")
MAX_EXAMPLES = 5
SEED = 20  # any fixed seed makes a failure reproducible


def fuzz(database_url: str) -> tuple[list[str], dict[str, Counter[int]]]:
    """Run schemathesis against a fresh app on *database_url*: the failed checks, and the statuses per operation."""
    app = app_module.create_app(database_url, USERS, OfflineModel())
    config = SchemathesisConfig.from_dict({
        "seed": SEED,
        "headers": {"Authorization": f"Bearer {ALICE}"},
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    })
    failures: list[str] = []
    statuses: dict[str, Counter[int]] = {}
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
        for event in from_schema(schema).execute():
            if isinstance(event, (events.NonFatalError, events.FatalError)):
                failures.append(f"the fuzzer could not run: {getattr(event, 'info', None) or event}")
            if not isinstance(event, events.ScenarioFinished):
                continue
            for case_id, interaction in event.recorder.interactions.items():
                if interaction.response is not None:
                    label = event.recorder.cases[case_id].value.operation.label
                    statuses.setdefault(label, Counter())[interaction.response.status_code] += 1
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        failures.append(f"{failure.operation}: {check.name}: {failure.title}\n{failure.message}\n"
                                        f"{check.failure_info.code_sample}")
    finally:
        asgi.shutdown_lifespans()  # the app's lifespan runs on schemathesis's event loop: dispose of its engine
    return list(dict.fromkeys(failures)), statuses


def test_the_fuzzer_finds_no_broken_promise(database_url: str) -> None:
    failures, statuses = fuzz(database_url)
    assert not failures, f"{len(failures)} failed checks:\n\n" + "\n\n".join(failures)
    # The run reached every route's success, not only its errors (the stateful phase uses real ids).
    operations = {label for label in statuses if label.startswith(("GET ", "POST ", "DELETE "))}
    assert len(operations) == 10, sorted(statuses)
    unanswered = [label for label in operations if not any(200 <= code < 300 for code in statuses[label])]
    assert not unanswered, {label: dict(statuses[label]) for label in unanswered}


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_document_lists_every_status_in_the_one_error_shape(database_url: str) -> None:
    async with service(database_url) as client:
        document = (await client.get("/openapi.json")).json()
    assert set(document["components"]["schemas"]).isdisjoint({"HTTPValidationError", "ValidationError"})
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            codes = {int(code) for code in operation["responses"]}
            expected = {405, 413, 500}
            expected |= {401} if path != "/api/health" else set()  # health is public
            expected |= {503} if path != "/api/me" else set()  # me needs no database
            if "{conversation_id}" in path:
                expected |= {404, 422}
            assert expected <= codes, (method, path, sorted(codes))
            for code in codes - {200, 201, 204}:
                assert operation["responses"][str(code)]["content"] == {"application/json": {"schema": error}}
    stream = document["paths"]["/api/conversations/{conversation_id}/messages/stream"]["post"]["responses"]
    assert list(stream["200"]["content"]) == ["text/event-stream"] and 409 in {int(code) for code in stream}


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_405_allows_every_method_of_the_path(database_url: str) -> None:
    async with service(database_url) as client:
        chat = await new_conversation(client, ALICE)
        response = await client.put(f"/api/conversations/{chat}", headers=auth(ALICE))
        assert response.status_code == 405
        assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "DELETE"}
        response = await client.get(f"/api/conversations/{chat}/messages", headers=auth(ALICE))
        assert response.status_code == 405 and response.headers["allow"] == "POST"


def accepted(message: str) -> bool:
    try:
        dependencies.NewMessage(message=message)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_message_pattern_rejects_exactly_what_the_validator_rejects(database_url: str) -> None:
    """The served schema's pattern and the service's validator agree on every code point, alone and after a
    letter: whitespace as str.strip() sees it (U+00A0 too) is blank, NUL is refused."""
    async with service(database_url) as client:
        document = (await client.get("/openapi.json")).json()
    fields = document["components"]["schemas"]
    pattern = re.compile(fields["NewMessage"]["properties"]["message"]["pattern"])
    title = re.compile(fields["NewConversation"]["properties"]["title"]["pattern"])
    assert title.search("Trip planning") and not title.search("a\0b")
    disagreements = []
    # Every code point of the BMP (all whitespace is there), and a sample of the planes above it.
    for code_point in [*range(0x10000), *range(0x10000, 0x110000, 257)]:
        if 0xD800 <= code_point <= 0xDFFF:
            continue  # surrogates cannot be sent in JSON text as UTF-8
        char = chr(code_point)
        alone = not char.isspace() and char != "\0"  # what the validator accepts, stated independently
        if bool(pattern.search(char)) != alone:
            disagreements.append(f"U+{code_point:04X} alone")
        if bool(pattern.search(f"a{char}")) != (char != "\0"):
            disagreements.append(f"U+{code_point:04X} after a letter")
    assert not disagreements, disagreements[:20]
    for message in ("\u00a0", " \u3000\n", "\u2028", "hi\0", "\0", "", " hi ", "a\u00a0b"):
        assert accepted(message) == bool(pattern.search(message)), repr(message)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_schema_following_client_meets_no_surprise_422(database_url: str) -> None:
    """What the schema forbids is a 422 in the error shape, saying why; what it allows is stored."""
    async with service(database_url) as client:
        chat = await new_conversation(client, ALICE)
        for message, problem in (("\u00a0", "message: Value error, message must not be blank"),
                                 ("hi\0there", "message: Value error, message must not contain NUL (\\u0000)")):
            response = await client.post(f"/api/conversations/{chat}/messages", json={"message": message},
                                         headers=auth(ALICE))
            assert response.status_code == 422 and response.json() == {"error": "invalid request",
                                                                       "problems": [problem]}
        response = await client.post("/api/conversations", json={"title": "a\0b"}, headers=auth(ALICE))
        assert response.status_code == 422, response.text
        answer: Any = await client.post(f"/api/conversations/{chat}/messages", json={"message": "\u00a0hi\u3000"},
                                        headers=auth(ALICE))
        assert answer.status_code == 200
        history = (await client.get(f"/api/conversations/{chat}/history", headers=auth(ALICE))).json()
        assert history["lines"][0] == "user: hi"
