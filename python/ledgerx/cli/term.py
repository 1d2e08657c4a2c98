"""Text from the log shown on a terminal: control characters escaped, never sent raw.

Run data is written by anyone who may emit (docs/security.md); printed raw, an ESC sequence in
a run id, a summary or a hand-written event type could move the cursor, retitle the window or
hide text. `printable()` escapes C0/C1 controls, DEL and the bidirectional overrides as `\\xNN`
/ `\\uNNNN`, so what is shown is what is stored, visibly.
"""

from __future__ import annotations

import re

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def printable(text: object) -> str:
    """`str(text)` with every control character shown as an escape."""
    return _CONTROLS.sub(_escape, str(text))
