"""LLM providers behind one small interface, for the sidecar (Vanna's explain, ask, train).

``arch.settings.llm_provider`` chooses one: ``openai`` (any OpenAI-compatible chat completions
API: OpenAI, Azure-style gateways, vLLM, LM Studio ...), ``ollama`` or ``gemini``;
``llm_base_url`` and ``llm_model`` say where and which.  Keys come only from the sidecar's
environment, never from the database:

=========  =========================================================
provider   key (first one set)
=========  =========================================================
openai     ``PGA_LLM_API_KEY``, ``OPENAI_API_KEY``
gemini     ``PGA_LLM_API_KEY``, ``GEMINI_API_KEY``, ``GOOGLE_API_KEY``
ollama     ``PGA_LLM_API_KEY`` (optional, sent as a bearer token)
=========  =========================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

DEFAULTS = {
    "openai": ("https://api.openai.com/v1", "gpt-4o-mini"),
    "ollama": ("http://localhost:11434", "llama3.1"),
    "gemini": ("https://generativelanguage.googleapis.com", "gemini-2.0-flash"),
}
KEY_VARS = {
    "openai": ("PGA_LLM_API_KEY", "OPENAI_API_KEY"),
    "gemini": ("PGA_LLM_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "ollama": ("PGA_LLM_API_KEY",),
}
MAX_ANSWER_CHARS = 20_000


class LLMError(Exception):
    """A failed LLM call. ``transient``: worth retrying later (network, 429, 5xx)."""

    def __init__(self, message: str, transient: bool = True):
        super().__init__(message)
        self.transient = transient


class LLM:
    """Chat completion: a list of ``{"role": system|user|assistant, "content": str}`` → text."""

    provider = "abstract"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout

    def chat(self, messages: Sequence[Mapping[str, str]]) -> str:
        raise NotImplementedError

    def _post(self, url: str, body: dict, headers: dict[str, str]) -> dict:
        import requests

        try:
            resp = requests.post(url, json=body, headers=headers, timeout=self.timeout)
        except requests.Timeout:
            raise LLMError(f"{self.provider}: no answer within {self.timeout:g} s ({url})") from None
        except requests.RequestException as exc:
            raise LLMError(f"{self.provider}: {type(exc).__name__}: {exc}") from None
        if resp.status_code == 429 or resp.status_code >= 500:
            raise LLMError(f"{self.provider}: HTTP {resp.status_code}: {resp.text[:300]}")
        if resp.status_code >= 400:
            raise LLMError(f"{self.provider}: HTTP {resp.status_code}: {resp.text[:300]}", transient=False)
        try:
            return resp.json()
        except ValueError:
            raise LLMError(f"{self.provider}: the answer is not JSON: {resp.text[:200]}") from None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model} at {self.base_url}>"


def _text(value) -> str:
    if not isinstance(value, str):
        raise LLMError("the LLM's answer has no text", transient=False)
    return value[:MAX_ANSWER_CHARS]


class OpenAICompatible(LLM):
    provider = "openai"

    def chat(self, messages):
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        data = self._post(f"{self.base_url}/chat/completions",
                          {"model": self.model, "messages": [dict(m) for m in messages], "temperature": 0},
                          headers)
        try:
            return _text(data["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError):
            raise LLMError(f"openai: unexpected answer: {str(data)[:200]}", transient=False) from None


class Ollama(LLM):
    provider = "ollama"

    def chat(self, messages):
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        data = self._post(f"{self.base_url}/api/chat",
                          {"model": self.model, "messages": [dict(m) for m in messages], "stream": False,
                           "options": {"temperature": 0}}, headers)
        try:
            return _text(data["message"]["content"])
        except (KeyError, TypeError):
            raise LLMError(f"ollama: unexpected answer: {str(data)[:200]}", transient=False) from None


class Gemini(LLM):
    provider = "gemini"

    def chat(self, messages):
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        contents = [{"role": "model" if m["role"] == "assistant" else "user", "parts": [{"text": m["content"]}]}
                    for m in messages if m["role"] != "system"]
        body: dict = {"contents": contents, "generationConfig": {"temperature": 0}}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        headers = {"x-goog-api-key": self.api_key} if self.api_key else {}
        data = self._post(f"{self.base_url}/v1beta/models/{self.model}:generateContent", body, headers)
        try:
            parts = data["candidates"][0]["content"]["parts"]
            return _text("".join(p.get("text", "") for p in parts))
        except (KeyError, IndexError, TypeError):
            raise LLMError(f"gemini: unexpected answer: {str(data)[:200]}", transient=False) from None


PROVIDERS = {"openai": OpenAICompatible, "ollama": Ollama, "gemini": Gemini}


def from_settings(settings: Mapping, env: Mapping[str, str] | None = None) -> LLM | None:
    """The LLM ``arch.settings`` asks for (None when ``llm_provider`` is NULL); the key from ``env``."""
    env = os.environ if env is None else env
    provider = settings.get("llm_provider")
    if not provider:
        return None
    if provider not in PROVIDERS:
        raise LLMError(f"unknown llm_provider {provider!r}", transient=False)
    base_default, model_default = DEFAULTS[provider]
    base = settings.get("llm_base_url") or base_default
    key = next((env[v] for v in KEY_VARS[provider] if env.get(v)), None)
    if key is None and provider in ("openai", "gemini") and not settings.get("llm_base_url"):
        raise LLMError(f"llm_provider is {provider} but the sidecar has no API key: set "
                       + " or ".join(KEY_VARS[provider]) + " in its environment", transient=False)
    return PROVIDERS[provider](base, settings.get("llm_model") or model_default, key,
                               float(settings.get("llm_timeout_s") or 60))
