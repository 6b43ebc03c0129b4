"""Model families. Each adapter is the only code that knows its family's modules and formats.

Adding a family is a new module here plus one line in `ADAPTERS` (or an entry point in the
`mmlens.adapters` group, for third parties).
"""

from mmlens.adapters.base import Adapter
from mmlens.adapters.llava import LlavaAdapter

ADAPTERS: tuple[type[Adapter], ...] = (LlavaAdapter,)

__all__ = ["ADAPTERS", "Adapter", "LlavaAdapter"]
