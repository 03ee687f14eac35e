"""SVG and PNG through Graphviz's ``dot`` program, and the digest an SVG carries of its DOT."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

# ------------------------------------------------------------------------ Graphviz


class GraphvizMissingError(RuntimeError):
    """Graphviz's ``dot`` program is not installed."""


def render_graphviz(dot_text: str, fmt: str = "svg") -> bytes:
    """Run Graphviz ``dot`` on ``dot_text``; SVG output records the hash of its source so
    that a stale SVG can be told without Graphviz (:func:`svg_source_digest`)."""
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizMissingError(
            "Graphviz's `dot` program is needed for SVG and PNG; install it "
            "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz)")
    proc = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode(), capture_output=True,
                          check=False, timeout=60)
    if proc.returncode != 0:
        raise ValueError(f"dot refused the graph: {proc.stderr.decode(errors='replace')}")
    out = proc.stdout
    if fmt == "svg":
        marker = f"<!-- fsm_exec dot source sha256: {dot_digest(dot_text)} -->\n".encode()
        head, sep, rest = out.partition(b"?>\n")
        out = head + sep + marker + rest if sep else marker + out
    return out


def dot_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def svg_source_digest(svg: bytes) -> str | None:
    """The DOT source hash recorded in an SVG written by :func:`render_graphviz`."""
    key = b"<!-- fsm_exec dot source sha256: "
    i = svg.find(key)
    if i < 0:
        return None
    j = svg.find(b" -->", i)
    return svg[i + len(key):j].decode() if j > 0 else None
