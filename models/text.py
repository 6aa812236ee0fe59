"""Text that reaches a terminal or one error line: names shown safely.

A file name may hold a newline (one error would read as two) or an escape
sequence (a plugin's summary could recolour or clear the terminal). Every
line the CLIs print goes through `terminal_safe`, and every path or name put
into an error message through `shown`.
"""

from __future__ import annotations

import os
from typing import Any


def shown(value: Any) -> str:
    """A path or name for a message: as it is when printable, else its Python repr
    (`'evil\\nname'`), so it stays on one line and its control characters stay visible."""
    text = os.fsdecode(value) if isinstance(value, (bytes, os.PathLike)) else str(value)
    return text if text.isprintable() else repr(text)


def terminal_safe(text: str, keep_newlines: bool = True) -> str:
    """`text` with every non-printable character (ESC, CR, BEL, ...) written as its escape
    (`\\x1b`); newlines are kept (they separate the lines of a table) unless `keep_newlines` is False."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or (keep_newlines and c == "\n") else repr(c)[1:-1] for c in text)
