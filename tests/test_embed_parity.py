"""The default embedder (all-MiniLM-L6-v2 on onnxruntime) gives sentence-transformers' vectors, without torch.

tests/fixtures/minilm_reference.json holds sentence-transformers' vectors for ~50 varied texts,
computed once by scripts/make_embedding_fixture.py in a throwaway venv with torch; here they are
compared with ours, in this Python (the server's venv) and inside the server (arch.embed), and
the server's Python is shown to have no torch at all.
"""

import base64
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import Session
from pg_architect import embed, minilm

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.json"
MAX_ABS = 1e-5
MIN_COS = 0.99999


@pytest.fixture(scope="module")
def reference():
    doc = json.loads(FIXTURE.read_text())
    texts = [c["text"] for c in doc["cases"]]
    vecs = np.stack([np.frombuffer(base64.b64decode(c["vector"]), dtype="<f4") for c in doc["cases"]])
    return doc, texts, vecs


def compare(got, want):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    max_abs = float(np.abs(got - want).max())
    cos = (got * want).sum(axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    return max_abs, float(cos.min())


def test_reference_fixture_covers_long_and_varied_texts(reference):
    doc, texts, vecs = reference
    lengths = [c["tokens_untruncated"] for c in doc["cases"]]
    assert len(texts) >= 45 and len(set(texts)) == len(texts)
    assert doc["max_seq_length"] == 256
    assert sum(n > 256 for n in lengths) >= 4, "texts sentence-transformers truncates"
    assert sum(128 < n <= 256 for n in lengths) >= 3, "texts the shipped tokenizer.json would cut at 128"
    assert "" in texts and any(not t.isascii() for t in texts)
    assert vecs.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)


def test_onnx_embeddings_match_sentence_transformers_batched_and_one_by_one(reference):
    _doc, texts, want = reference
    model = minilm.MiniLM()
    batched = model.encode(texts)
    assert compare(batched, want)[0] <= MAX_ABS and compare(batched, want)[1] >= MIN_COS, compare(batched, want)
    single = np.stack([model.encode([t])[0] for t in texts])
    assert compare(single, want)[0] <= MAX_ABS and compare(single, want)[1] >= MIN_COS, compare(single, want)
    # In reverse order: other batches, other padding; the same vectors, in the caller's order.
    rev = model.encode(texts[::-1])[::-1]
    assert compare(rev, want)[0] <= MAX_ABS


def test_long_texts_are_cut_at_256_tokens_not_128(reference):
    doc, _texts, _want = reference
    model = minilm.MiniLM()
    assert model.max_seq_length == 256
    long = next(c["text"] for c in doc["cases"] if c["tokens_untruncated"] > 256)
    ids = model.tokens([long])[0].ids
    assert len(ids) == 256 and ids[-1] == model.tokenizer.token_to_id("[SEP]")
    # What follows token 256 changes nothing; what comes before it does.
    assert compare(model.encode([long + " AND extra = 1"]), model.encode([long]))[0] < 1e-6
    mid = next(c["text"] for c in doc["cases"] if 140 < c["tokens_untruncated"] <= 250)
    assert compare(model.encode([mid]), model.encode([mid[: len(mid) * 3 // 4]]))[1] < 0.9999


def test_batches_are_capped_by_tokens(reference, monkeypatch):
    _doc, texts, want = reference
    model = minilm.MiniLM()
    shapes = []
    run = model.session.run

    def spy(names, feeds):
        shapes.append(feeds["input_ids"].shape)
        return run(names, feeds)

    monkeypatch.setattr(model.session, "run", spy)
    got = model.encode(texts * 3)
    assert compare(got, np.concatenate([want] * 3))[0] <= MAX_ABS
    assert len(shapes) > 1 and sum(b for b, _ in shapes) == 3 * len(texts)
    assert all(b * n <= minilm.BATCH_TOKENS and b <= minilm.BATCH_TEXTS for b, n in shapes), shapes


def test_arch_embed_in_the_server_matches_sentence_transformers_without_torch(dsn, reference):
    """Inside PL/Python: the same vectors, and neither torch nor onnx (build time only) is imported
    — the server's Python cannot even find torch."""
    _doc, texts, want = reference
    s = Session(dsn)
    try:
        assert s.value("SELECT embedding_model FROM arch.settings") == "all-MiniLM-L6-v2"
        got = [json.loads(s.value("SELECT arch.embed(%s)::text", (t,))) for t in texts]
        max_abs, min_cos = compare(got, want)
        # pgvector stores float4, printed with shortest round-trip digits: no loss beyond float32.
        assert max_abs <= MAX_ABS and min_cos >= MIN_COS, (max_abs, min_cos)
        s.sql("""DO $$
import sys, importlib.util
loaded = sorted(m for m in ("torch", "transformers", "sentence_transformers", "onnx") if m in sys.modules)
if loaded:
    plpy.error("arch.embed imported " + ", ".join(loaded))
if "onnxruntime" not in sys.modules:
    plpy.error("arch.embed did not use onnxruntime")
if importlib.util.find_spec("torch") is not None:
    plpy.error("torch is importable in the server's Python: " + importlib.util.find_spec("torch").origin)
try:
    import torch  # noqa: F401
except ImportError:
    pass
else:
    plpy.error("import torch succeeded")
$$ LANGUAGE plpython3u""")
    finally:
        s.close()


def test_first_embedding_in_a_fresh_backend_is_quick_and_small(dsn):
    """The targets are ≤ 1.0 s and ≤ 250 MB (bench/bench_knowledge.py measures them). Here the
    backend's own CPU time is measured, not the wall clock (the test machine may be loaded): the
    torch path spent 6–10 s of CPU and ~0.5 GB on the same first call."""
    def backend(pid):
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu_s = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        status = Path(f"/proc/{pid}/status").read_text()
        rss_mb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024
        return cpu_s, rss_mb

    s = Session(dsn)
    try:
        pid = s.value("SELECT pg_backend_pid()")
        s.value("SELECT arch.canonical_statement('SELECT 1')")  # the package and sqlglot
        cpu0, _ = backend(pid)
        assert s.value("SELECT vector_dims(arch.embed('SELECT * FROM orders WHERE id = $1'))") == 384
        cpu1, rss_mb = backend(pid)
        for i in range(20):
            s.value("SELECT arch.embed(%s)", (f"SELECT * FROM orders WHERE id = {i}",))
        cpu2, _ = backend(pid)
    finally:
        s.close()
    first, next_20 = cpu1 - cpu0, cpu2 - cpu1
    assert first < 1.5 and rss_mb < 300, (first, rss_mb)
    assert next_20 < 1.0, next_20


def test_missing_graph_is_an_error_with_a_hint(tmp_path):
    """Nothing is downloaded or built at run time: without the graph the embedder says what to run."""
    src = minilm.weights_dir()
    for name in ("config.json", "tokenizer.json", "sentence_bert_config.json", "modules.json"):
        (tmp_path / name).write_bytes((src / name).read_bytes())
    with pytest.raises(minilm.ModelMissing, match="has not been built"):
        minilm.MiniLM(tmp_path)
    with pytest.raises(embed.UserError) as err:
        embed.OnnxEmbedder("all-MiniLM-L6-v2", tmp_path)
    assert "pg-architect build-model" in err.value.hint


def test_build_model_is_a_noop_when_current_and_rebuilds_the_same_graph(tmp_path):
    src = minilm.weights_dir()
    assert minilm.graph_is_current(src)
    out = minilm.build_graph()
    assert out["built"] is False
    # A fresh build into another directory gives the same vectors (onnx refuses symbolic links
    # to external data: hard links where possible, else copies).
    for p in src.iterdir():
        if p.is_file() and not p.name.startswith("pg_architect_minilm"):
            try:
                os.link(p, tmp_path / p.name)
            except OSError:
                shutil.copyfile(p, tmp_path / p.name)
    built = minilm.build_graph(tmp_path)
    assert built["built"] and built["bytes"] < 200_000, built  # the weights stay in model.safetensors
    a = minilm.MiniLM(tmp_path).encode(["SELECT 1", "x"])
    b = minilm.MiniLM(src).encode(["SELECT 1", "x"])
    assert np.abs(a - b).max() == 0
    assert math.isclose(float(np.linalg.norm(a[0])), 1.0, rel_tol=1e-6)
