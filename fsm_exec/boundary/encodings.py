"""The forms a secret takes in the text an HTTP client, an SDK or Python writes into an
error: one regular expression per secret that matches it however its characters are
escaped (:func:`secret_pattern`), and the base64 runs that hold it (:func:`base64_runs`).

A character of a secret may appear as itself or, unless it is an ASCII letter or digit
(which no common encoder escapes), as:

- percent-encoded (``urllib.parse.quote`` with any ``safe`` set, ``quote_plus``, a client's
  own set; hex digits in either case), encoded twice (``%252F``), or ``+`` for a space;
- a JSON or Python escape (``\\/``, ``\\"``, ``\\'``, ``\\\\``, ``\\n``, ``\\xNN``,
  ``\\uNNNN``, a surrogate pair, ``\\UNNNNNNNN``), its backslash itself escaped once or twice
  (a ``repr()`` of JSON text, JSON of a ``repr()``);
- an HTML character reference (``&amp;``, ``&#43;``, ``&#x2b;``).

Each character is matched independently, so a secret written through any mixture of these
(``requests`` leaves ``+`` and ``=`` as they are and quotes the rest) is still found.
"""

from __future__ import annotations

import base64
import re

#: An escape's backslash, itself escaped once or twice more (``\\u``, ``\\\\u``, ``\\\\\\u``).
_BACKSLASH = r"\\{1,3}"
_NAMED = {"\n": "n", "\t": "t", "\r": "r", "\b": "b", "\f": "f", "\x0b": "v", "\x07": "a",
          "\\": "\\", '"': '"', "'": "'", "/": "/"}
_HTML = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos"}


def _hex(n: int, width: int = 1) -> str:
    """``n`` in hex digits of either case: ``[aA][bB]``."""
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{n:0{width}x}")


def char_pattern(c: str) -> str:
    """A regular expression matching the character ``c`` as itself or in any of its
    escaped forms (see the module's documentation)."""
    if c.isascii() and c.isalnum():
        return c
    o = ord(c)
    percent = "".join(f"%{_hex(b, 2)}" for b in c.encode("utf-8", "surrogatepass"))
    forms = [re.escape(c), percent, percent.replace("%", "%25")]
    if c == " ":
        forms.append(r"\+")
    if o < 0x100:
        forms.append(f"{_BACKSLASH}x{_hex(o, 2)}")
    if o < 0x10000:
        forms.append(f"{_BACKSLASH}u{_hex(o, 4)}")
    else:
        high, low = 0xD800 + ((o - 0x10000) >> 10), 0xDC00 + ((o - 0x10000) & 0x3FF)
        forms.append(f"{_BACKSLASH}u{_hex(high, 4)}{_BACKSLASH}u{_hex(low, 4)}")
        forms.append(f"{_BACKSLASH}U{_hex(o, 8)}")
    if c in _NAMED:
        forms.append(_BACKSLASH + re.escape(_NAMED[c]))
    if c in _HTML:
        forms.append(f"&{_HTML[c]};")
    forms.append(f"&#0*{o};")
    forms.append(f"&#[xX]0*{_hex(o)};")
    return "(?:" + "|".join(forms) + ")"


def secret_pattern(secret: str) -> str:
    """A regular expression matching ``secret`` in its plain form and in every escaped
    form of its characters (not anchored; no groups)."""
    return "".join(char_pattern(c) for c in secret)


def base64_runs(secret: str, min_length: int = 8) -> set[str]:
    """The base64 text (standard and URL-safe) that holds ``secret``'s bytes wherever they
    fall in the encoded data (``user:secret`` in a Basic ``Authorization`` header): for
    each of the three alignments, the run of characters that only ``secret`` determines.
    Runs shorter than ``min_length`` are left out (too short to tell from chance)."""
    raw = secret.encode("utf-8", "surrogatepass")
    runs: set[str] = set()
    for offset in range(3):
        first = -(-8 * offset // 6)  # the first character made of the secret's bits only
        end = 8 * (offset + len(raw)) // 6  # past the last one
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            run = encode(b"\0" * offset + raw).decode("ascii")[first:end]
            if len(run) >= min_length:
                runs.add(run)
    return runs
