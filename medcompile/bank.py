"""Exemplar banks: the solved questions that kNN few-shot retrieves from.

A bank is stored inside the compiled program with its embedder's settings and,
optionally, its embeddings (exact float32 bytes in base64), so a service that loads
the program needs no training data and gets the same neighbours.

What a bank writes is fixed by how it was made, never by what it was used for: a bank
given embeddings, or asked for them explicitly (`embeddings()`, which `Program.prepare`
and the compiler call for kNN), writes them with its embedder's full settings; a kNN
lookup alone computes what it needs internally and changes nothing `to_config()` shows.
Large banks (from `AUTO_THRESHOLD` rows) search an approximate index whose recall@5 is
measured when it is built and written beside the embeddings (`index`); a loaded bank
reuses the recorded index parameters.
"""
from __future__ import annotations

import hashlib
import json
import threading
from typing import Any, Mapping, Sequence

import numpy as np

from .exemplar import Exemplar
from .question import Question


#: Embedder settings that say where to connect or what to download. A program file comes
#: from someone else: it must not decide where retrieval queries (and the API key named
#: in the environment) are sent, so these are never written and are refused on load.
CONNECTION_SETTINGS = frozenset({"api_base", "api_key_env", "allow_download"})


MEMO_SIZE = 4096


def query_text(q: Question) -> str:
    """What is embedded for retrieval: the question stem (options do not move it)."""
    return q.question


class Bank:
    """A list of exemplars plus the machinery to find the nearest ones."""

    def __init__(self, exemplars: Sequence[Exemplar], embedder: Mapping[str, Any] | None = None,
                 embeddings: np.ndarray | None = None, store_embeddings: bool = True,
                 index: Mapping[str, Any] | None = None, *, resolved: bool = False):
        self.exemplars = list(exemplars)
        #: The embedder settings as given; never changed afterwards (see the module docstring).
        self.embedder_settings = dict(embedder) if embedder else None
        self._embeddings = embeddings
        self.store_embeddings = store_embeddings
        # Embeddings given or explicitly computed: written by to_config (with resolved settings).
        self._materialized = embeddings is not None
        # `resolved`: the given settings are the embedder's full settings (e.g. read from a file).
        self._resolved: dict[str, Any] | None = None
        self._resolved_known = resolved
        if resolved:
            self._resolved = self.embedder_settings
        self._index_info = dict(index) if index else None  # recorded index settings, incl. recall
        self._index = None
        self._embedder = None
        self._lock = threading.Lock()
        self._search_lock = threading.Lock()
        self._rows_by_id: dict[str, list[int]] | None = None
        # Shuffled variants of one question share its stem, so an ensemble retrieves once.
        self._memo: dict[tuple[str, str, int], list[int]] = {}
        if embeddings is not None and embeddings.shape[0] != len(self.exemplars):
            raise ValueError(f"bank has {len(self.exemplars)} exemplars but {embeddings.shape[0]} embeddings")

    def __len__(self) -> int:
        return len(self.exemplars)

    # ---- retrieval -----------------------------------------------------------------
    def _ensure(self) -> None:
        """Embedder, embeddings and index, built once (internal: changes nothing to_config shows)."""
        with self._lock:
            if self._index is not None:
                return
            from .embed import KNNIndex, make_embedder
            from .embed import index as index_mod

            self._embedder = make_embedder(self.embedder_settings)
            if not self._resolved_known:
                self._resolved, self._resolved_known = self._embedder.settings(), True
            if self._embeddings is None:
                self._embeddings = self._embedder.embed([query_text(e.question) for e in self.exemplars])
            self._index = KNNIndex(self._embeddings, kind="auto", auto_threshold=index_mod.AUTO_THRESHOLD,
                                   **self._index_params())
            if self._index_info is None and self._index.kind != "flat":
                self._index_info = self._index.settings()

    def _index_params(self) -> dict[str, Any]:
        """The recorded index's parameters, when they fit the index this bank's size gets
        (an IVF recorded without `codes` was built with float32 lists, and still is)."""
        from .embed import index as index_mod

        info = self._index_info or {}
        kind = "flat" if len(self.exemplars) < index_mod.AUTO_THRESHOLD else "ivf"
        if info.get("kind") != kind or info.get("n") != len(self.exemplars):
            return {}
        keys = ("nlist", "nprobe") if kind == "ivf" else ()
        params: dict[str, Any] = {k: int(info[k]) for k in keys if isinstance(info.get(k), int)}
        if kind == "ivf":
            params["codes"] = info.get("codes", "f32")
        return params

    def embeddings(self) -> np.ndarray:
        """The bank's embeddings, computed now if needed; from then on they are part of
        `to_config()` (an explicit request, unlike a kNN lookup)."""
        self._ensure()
        assert self._embeddings is not None
        self._materialized = True
        return self._embeddings

    def index_settings(self) -> dict[str, Any] | None:
        """The approximate index's settings and measured recall@5 (None: exact search)."""
        return dict(self._index_info) if self._index_info else None

    def nearest(self, q: Question, k: int) -> list[Exemplar]:
        """The k most similar exemplars, least similar first so the nearest sits next
        to the question; an exemplar identical to the question is never shown."""
        if k <= 0 or not self.exemplars:
            return []
        key = (query_text(q), q.id, k)
        ids = self._memo.get(key)
        if ids is None:
            self._ensure()
            assert self._embedder is not None and self._index is not None
            with self._search_lock:  # a question's parallel shuffles: one retrieval, the rest hit the memo
                ids = self._memo.get(key)
                if ids is None:
                    vec = self._embedder.embed([query_text(q)])
                    exclude = self._same_question(q)
                    ids = self._index.search(vec, min(k, len(self.exemplars) - len(exclude)), exclude=[exclude])[0]
                    if len(self._memo) >= MEMO_SIZE:
                        self._memo.clear()
                    self._memo[key] = ids
        return [self.exemplars[i] for i in reversed(ids)]

    def _same_question(self, q: Question) -> set[int]:
        """Rows holding this very question (leave-one-out), via an id index, not a scan."""
        if self._rows_by_id is None:
            rows: dict[str, list[int]] = {}
            for i, e in enumerate(self.exemplars):
                rows.setdefault(e.question.id, []).append(i)
            self._rows_by_id = rows
        return {i for i in self._rows_by_id.get(q.id, ()) if self.exemplars[i].question.question == q.question}

    def nearest_many(self, qs: Sequence[Question], k: int) -> list[list[Exemplar]]:
        """Batched `nearest` (one embedding call) for evaluation and compile."""
        if k <= 0 or not self.exemplars:
            return [[] for _ in qs]
        self._ensure()
        assert self._embedder is not None and self._index is not None
        vecs = self._embedder.embed([query_text(q) for q in qs])
        excl = [self._same_question(q) for q in qs]
        kk = max(0, min(k, len(self.exemplars) - 1))
        ids = self._index.search(vecs, kk, exclude=excl)
        return [[self.exemplars[i] for i in reversed(row)] for row in ids]

    # ---- identity and storage ---------------------------------------------------------
    def fingerprint(self) -> str:
        blob = json.dumps([e.to_dict() for e in self.exemplars], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def subset(self, keep: Sequence[int]) -> "Bank":
        emb = self._embeddings[list(keep)] if self._embeddings is not None else None
        return self._derived([self.exemplars[i] for i in keep], emb, index=None)

    def with_exemplars(self, exemplars: Sequence[Exemplar]) -> "Bank":
        """The same questions (and embeddings) with other exemplar texts, e.g. rationales."""
        if [e.question.id for e in exemplars] != [e.question.id for e in self.exemplars]:
            raise ValueError("with_exemplars needs the same questions in the same order")
        return self._derived(exemplars, self._embeddings, index=self._index_info)

    def _derived(self, exemplars: Sequence[Exemplar], emb: np.ndarray | None,
                 index: Mapping[str, Any] | None) -> "Bank":
        """A new bank from this one's embedder; with embeddings it holds them by construction,
        under this bank's resolved settings when known."""
        known = emb is not None and self._resolved_known
        return Bank(exemplars, self._resolved if known else self.embedder_settings, emb, self.store_embeddings,
                    index, resolved=known)

    def to_config(self) -> dict[str, Any]:
        from .embed import encode_matrix

        d: dict[str, Any] = {"items": [e.to_dict() for e in self.exemplars]}
        stored = self.store_embeddings and self._materialized and len(self.exemplars) > 0
        if stored and not self._complete():
            self._ensure()  # resolve the settings the embeddings came from; measure a large index
        settings = self._resolved if stored else self.embedder_settings
        d["embedder"] = ({k: v for k, v in settings.items() if k not in CONNECTION_SETTINGS}
                         if settings is not None else None)
        if stored and self._embeddings is not None:
            m = np.ascontiguousarray(self._embeddings, dtype="<f4")
            d["embeddings"] = {"encoding": "base64-f32le", "shape": list(m.shape),
                               "sha256": hashlib.sha256(m.tobytes()).hexdigest(), "data": encode_matrix(m)}
            if self._index_info is not None:
                d["index"] = dict(self._index_info)
        return d

    def _complete(self) -> bool:
        """Everything to_config writes for stored embeddings is already known."""
        from .embed import index as index_mod

        return (self._embeddings is not None and self._resolved_known
                and (self._index_info is not None or len(self.exemplars) < index_mod.AUTO_THRESHOLD))

    @classmethod
    def from_config(cls, d: Mapping[str, Any]) -> "Bank":
        from .embed import decode_matrix

        exemplars = [Exemplar.from_dict(x) for x in d["items"]]
        emb = None
        if d.get("embeddings"):
            e = d["embeddings"]
            n, dim = e["shape"]
            emb = decode_matrix(e["data"], n, dim)
            if hashlib.sha256(np.ascontiguousarray(emb, dtype="<f4").tobytes()).hexdigest() != e["sha256"]:
                raise ValueError("banks: embeddings do not match their sha256")
        return cls(exemplars, d.get("embedder"), emb, store_embeddings=emb is not None,
                   index=d.get("index") if emb is not None else None, resolved=emb is not None)
