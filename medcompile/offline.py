"""Keep third-party libraries from reaching the network on import.

litellm downloads its model cost map when it is first imported unless told to use the
copy it ships; medcompile promises offline imports (the embedded model needs no
network), so every place that may import litellm first calls this.
"""
from __future__ import annotations

import os

LITELLM_OFFLINE_FLAG = "LITELLM_LOCAL_MODEL_COST_MAP"


def keep_litellm_offline() -> None:
    """Use litellm's bundled cost map (a user's explicit setting wins)."""
    os.environ.setdefault(LITELLM_OFFLINE_FLAG, "True")
