"""What only the sidecar runs (``pg-architect sidecar``, over psycopg, never inside the server):

* :mod:`.loop` — the request loop (``arch.request``: LISTEN + poll, SKIP LOCKED claims, heartbeat);
* :mod:`.github` — pull requests for approved recommendations (DDL validated, migration files);
* :mod:`.vanna` — Vanna on ``arch.vanna_training``: explain (step 3, context), ask, train;
* :mod:`.llm` — the LLM providers; keys come from the sidecar's environment only.

It uses only the public parts of the server modules (``sqltext``, ``settings``, ``errors``, ``db``,
``security``'s gates).
"""

from .loop import Sidecar, SidecarError

__all__ = ["Sidecar", "SidecarError"]
