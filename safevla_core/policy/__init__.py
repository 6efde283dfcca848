"""SPOC-style policy: frozen encoders, fusion encoder, causal decoder with a KV cache, critics.

The encoders are imported lazily by their getters (loading them takes seconds); importing this
package only imports torch.
"""

from safevla_core.actions import START_ACTION
from safevla_core.policy.encoders import (
    FrozenTextEncoder,
    FrozenVisualEncoder,
    get_text_encoder,
    get_visual_encoder,
)
from safevla_core.policy.kv_cache import KVCache
from safevla_core.policy.model import (
    MAX_TIME_STEPS,
    PolicyOutput,
    SafeVLAPolicy,
    decoder_attention_mask,
)

__all__ = [
    "MAX_TIME_STEPS",
    "START_ACTION",
    "FrozenTextEncoder",
    "FrozenVisualEncoder",
    "KVCache",
    "PolicyOutput",
    "SafeVLAPolicy",
    "decoder_attention_mask",
    "get_text_encoder",
    "get_visual_encoder",
]
