"""Language-model backends and the wrappers that make them reliable and accountable.

Heavy dependencies (llama-cpp-python, litellm) are imported only when a model is used.
"""
from medcompile.lm.base import LM, LMError, LMRequest, LMResponse, LMUnavailable, Message, Mode, Usage
from medcompile.lm.cache import CachedLM, DiskCache, default_cache_dir
from medcompile.lm.faults import FAULTS, FaultyLM
from medcompile.lm.litellm_lm import LiteLLMLM
from medcompile.lm.llamacpp import LlamaCppLM
from medcompile.lm.local_model import DEFAULT_LOCAL_MODEL, default_gguf_path
from medcompile.lm.meter import BudgetedLM, BudgetExceeded, MeteredLM, UsageMeter, usage_diff
from medcompile.lm.registry import lm_settings, make_lm, wrap_lm
from medcompile.lm.retry import LimitedLM, RetryingLM
from medcompile.lm.scripted import ConstantLM, EchoLM, ScriptedLM

__all__ = [
    "LM", "LMError", "LMRequest", "LMResponse", "LMUnavailable", "Message", "Mode", "Usage",
    "CachedLM", "DiskCache", "default_cache_dir",
    "FAULTS", "FaultyLM",
    "LiteLLMLM", "LlamaCppLM", "DEFAULT_LOCAL_MODEL", "default_gguf_path",
    "BudgetedLM", "BudgetExceeded", "MeteredLM", "UsageMeter", "usage_diff",
    "lm_settings", "make_lm", "wrap_lm",
    "LimitedLM", "RetryingLM",
    "ConstantLM", "EchoLM", "ScriptedLM",
]
