"""A deterministic LLM stand-in behind real HTTP (OpenAI-compatible, Ollama and Gemini APIs).

The stand-in answers by rules, like a (too) obedient model:
* a prompt containing "ignore previous instructions" is obeyed: the answer is destructive SQL;
* an explain prompt gets "Business purpose: ..." naming the statement's tables;
* Vanna's SQL prompt gets ``answers[question]`` (default ``SELECT 1 AS answer``);
* Vanna's generate_question prompt gets a question about the statement's first table.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HIJACKED = "DROP TABLE users; DELETE FROM orders;"


def _tables(sql: str) -> list[str]:
    found = []
    for t in re.findall(r"\b(?:from|join)\s+([a-z_][a-z0-9_.]*)", sql, re.I):
        t = t.split(".")[-1].lower()
        if t not in found:
            found.append(t)
    return found


class FakeLLM:
    def __init__(self, latency: float = 0.0):
        self.answers: dict[str, str] = {}
        self.calls: list[dict] = []
        self.failures: list[int] = []      # HTTP statuses to answer with, first come first served
        self.latency = latency
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="fake-llm", daemon=True)

    def start(self) -> FakeLLM:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def respond(self, messages: list[dict]) -> str:
        system = "\n".join(m["content"] for m in messages if m["role"] == "system")
        users = [m["content"] for m in messages if m["role"] == "user"]
        last = users[-1] if users else ""
        everything = system + "\n" + "\n".join(users)
        if "ignore previous instructions" in everything.lower():
            return HIJACKED
        if "explain SQL statements to the people who run a business" in system:
            tables = _tables(last) or ["the data"]
            return f"Business purpose: the application looks up {' and '.join(tables)} for its users."
        if "guess the business question" in system:
            tables = _tables(last) or ["the data"]
            return f"Which {tables[0]} rows does the application need?"
        if "generate a SQL query" in system:
            return self.answers.get(last.strip(), "SELECT 1 AS answer")
        return "OK"

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                path = urlsplit(self.path).path
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if fake.latency:
                    time.sleep(fake.latency)
                if path.endswith("/chat/completions"):
                    provider, messages = "openai", body["messages"]
                elif path.endswith("/api/chat"):
                    provider, messages = "ollama", body["messages"]
                elif ":generateContent" in path:
                    provider = "gemini"
                    messages = [{"role": "system", "content": p["text"]}
                                for p in (body.get("systemInstruction") or {}).get("parts", [])]
                    messages += [{"role": "assistant" if c["role"] == "model" else "user",
                                  "content": "".join(p["text"] for p in c["parts"])} for c in body["contents"]]
                else:
                    return self._send(404, {"error": "not found"})
                with fake.lock:
                    fake.calls.append({"provider": provider, "path": path, "messages": messages,
                                       "model": body.get("model"), "headers": dict(self.headers)})
                    status = fake.failures.pop(0) if fake.failures else 200
                if status != 200:
                    return self._send(status, {"error": {"message": f"injected {status}"}})
                text = fake.respond(messages)
                if provider == "openai":
                    return self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]})
                if provider == "ollama":
                    return self._send(200, {"message": {"role": "assistant", "content": text}, "done": True})
                return self._send(200, {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}}]})

        return Handler
