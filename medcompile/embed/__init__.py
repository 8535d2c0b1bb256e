"""Text embedders and the kNN index behind dynamic few-shot selection.

Heavy libraries (wordllama, torch, litellm, faiss) load only when an embedder or
index is built, so importing this package is cheap.
"""
from medcompile.embed.base import Embedder, EmbedderError, clear_model_cache, l2_normalize
from medcompile.embed.index import (
    KNNError,
    KNNIndex,
    MatrixCodecError,
    brute_force_knn,
    decode_matrix,
    encode_matrix,
)
from medcompile.embed.litellm_embedder import LiteLLMEmbedder
from medcompile.embed.registry import DEFAULT_SPEC, clear_embedder_cache, make_embedder, parse_spec
from medcompile.embed.st_embedder import MINILM_NAME, SentenceTransformerEmbedder, bundled_minilm_path
from medcompile.embed.wordllama_embedder import WordLlamaEmbedder

__all__ = [
    "DEFAULT_SPEC",
    "Embedder",
    "EmbedderError",
    "KNNError",
    "KNNIndex",
    "LiteLLMEmbedder",
    "MINILM_NAME",
    "MatrixCodecError",
    "SentenceTransformerEmbedder",
    "WordLlamaEmbedder",
    "brute_force_knn",
    "bundled_minilm_path",
    "clear_embedder_cache",
    "clear_model_cache",
    "decode_matrix",
    "encode_matrix",
    "l2_normalize",
    "make_embedder",
    "parse_spec",
]
