"""Model families. Each adapter is the only code that knows its family's modules and formats.

Adding a family is a new module here plus one line in `ADAPTERS` (or an entry point in the
`mmlens.adapters` group, for third parties).
"""

from mmlens.adapters.base import Adapter
from mmlens.adapters.gemma3 import Gemma3Adapter
from mmlens.adapters.llava import LlavaAdapter
from mmlens.adapters.llava_next import LlavaNextAdapter
from mmlens.adapters.llava_original import LlavaOriginalAdapter
from mmlens.adapters.qwen2_5_vl import Qwen2_5_VLAdapter

ADAPTERS: tuple[type[Adapter], ...] = (
    LlavaAdapter,
    LlavaOriginalAdapter,
    LlavaNextAdapter,
    Qwen2_5_VLAdapter,
    Gemma3Adapter,
)

__all__ = [
    "ADAPTERS",
    "Adapter",
    "Gemma3Adapter",
    "LlavaAdapter",
    "LlavaNextAdapter",
    "LlavaOriginalAdapter",
    "Qwen2_5_VLAdapter",
]
