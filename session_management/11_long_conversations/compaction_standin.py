"""A local stand-in for OpenAI's ``POST /v1/responses/compact``, so compaction can be watched offline.

It is not OpenAI's compaction: the real endpoint returns an *encrypted* ``compaction`` item that only OpenAI's
models can read. The stand-in answers in the same shape (every user message, then one ``compaction`` item whose
``encrypted_content`` is a placeholder) and records each request, which is what the lesson and the tests look at:
when ``OpenAIResponsesCompactionSession`` calls, with what, and what it stores afterwards.

    with CompactionStandIn() as server:
        client = AsyncOpenAI(base_url=server.base_url, api_key="stand-in")   # or OPENAI_BASE_URL=server.base_url
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class CompactionStandIn:
    """``/v1/responses/compact`` on 127.0.0.1 (a free port), in a background thread."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path.rstrip("/") != "/v1/responses/compact":
                    self._send(404, {"error": {"message": f"the stand-in serves only /v1/responses/compact, "
                                                          f"not {self.path}", "type": "invalid_request_error"}})
                    return
                stand_in.requests.append(body)
                self._send(200, stand_in.compact(body))

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    def compact(self, body: dict[str, Any]) -> dict[str, Any]:
        """What the endpoint returns: the user messages kept, everything else folded into one opaque item."""
        items = body.get("input") or []
        users = [item for item in items if isinstance(item, dict) and item.get("role") == "user"]
        number = len(self.requests)
        folded = len(items) - len(users)
        return {
            "id": f"cmp_standin_{number}", "created_at": 0, "object": "response.compaction",
            "output": [*({"type": "message", "role": "user", "content": user["content"]} for user in users),
                       {"type": "compaction", "id": f"cmpitem_standin_{number}",
                        "encrypted_content": f"(stand-in: {folded} items folded; OpenAI's would be encrypted)"}],
            "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0,
                      "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}},
        }

    def __enter__(self) -> CompactionStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
