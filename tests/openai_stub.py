"""A scripted OpenAI-compatible chat server on 127.0.0.1, run in a thread: the teacher's tests and benchmark use it.

    with StubOpenAI(respond=lambda messages: "ok", latency=0.2, faults={"item 3": ["429", "500"]}) as server:
        OpenAITeacher("stub", base_url=server.url, ...)

`respond(messages)` gives the reply text; `faults` maps a substring of the last message to the faults its next
matching requests get, in order ("429", "500", "503", "401", "hang", "bad_json", "wrong_shape", "length"), before
normal answers resume. `counts` holds the requests and faults served; `max_in_flight` the most requests handled at once.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

FAULTS = ("429", "500", "503", "401", "hang", "bad_json", "wrong_shape", "length")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # listen backlog; socketserver's 5 drops a burst of connects (1 s SYN retry each)

    def handle_error(self, request, client_address) -> None:  # a client that timed out and left: expected
        pass


def echo(messages: list[dict]) -> str:
    return "echo: " + messages[-1]["content"]


class StubOpenAI:
    def __init__(self, respond: Callable[[list[dict]], str] = echo, latency: float = 0.0,
                 faults: dict[str, list[str]] | None = None, hang_seconds: float = 30.0):
        self.respond, self.latency, self.hang_seconds = respond, latency, hang_seconds
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.counts: Counter = Counter()  # "requests", and one count per fault served
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def _next_fault(self, text: str) -> str | None:
        with self._lock:
            self.counts["requests"] += 1
            for key, pending in self.faults.items():
                if key in text and pending:
                    fault = pending.pop(0)
                    self.counts[fault] += 1
                    return fault
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with stub._lock:
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    self._answer(request)
                finally:
                    with stub._lock:
                        stub.in_flight -= 1

            def _answer(self, request: dict) -> None:
                messages = request.get("messages", [])
                fault = stub._next_fault(messages[-1]["content"] if messages else "")
                if stub.latency:
                    time.sleep(stub.latency)
                if fault == "hang":
                    time.sleep(stub.hang_seconds)
                if fault in ("429", "500", "503", "401"):
                    error = json.dumps({"error": {"message": f"stub fault {fault}", "type": "stub"}}).encode()
                    self._send(int(fault), error, {"Retry-After": "0"} if fault == "429" else None)
                    return
                if fault == "bad_json":
                    self._send(200, b'{"choices": [ this is not json')
                    return
                if fault == "wrong_shape":  # valid JSON, not a chat completion
                    self._send(200, b'{"choices": [{"index": 0, "message": "no fields"}]}')
                    return
                text = stub.respond(messages)
                body = {
                    "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()),
                    "model": request.get("model", "stub"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "length" if fault == "length" else "stop"}],
                    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                }
                self._send(200, json.dumps(body).encode())

        return Handler

    def __enter__(self) -> "StubOpenAI":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def main() -> None:
    """Serve the stub from its own process (benchmarks keep its CPU off the client's): prints the URL, then serves."""
    import argparse

    p = argparse.ArgumentParser(description="A scripted OpenAI-compatible chat server on 127.0.0.1 (echo replies).")
    p.add_argument("--latency", type=float, default=0.2, help="seconds per request")
    args = p.parse_args()
    with StubOpenAI(latency=args.latency) as server:
        print(server.url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
