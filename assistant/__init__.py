"""Clinical follow-up question assistant: cited guideline-then-research answers."""

__version__ = "0.1.0"

from assistant.assistant import Assistant  # noqa: E402
from assistant.settings import Settings  # noqa: E402
from assistant.types import Answer, Turn  # noqa: E402

__all__ = ["Assistant", "Answer", "Settings", "Turn", "__version__"]
