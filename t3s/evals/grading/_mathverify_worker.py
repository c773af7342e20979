"""math-verify checks, usable in-process or as a killable worker subprocess.

This module imports no ``t3s`` package (and neither torch nor transformers) so that
:class:`t3s.evals.grading.mathverify.MathVerifier` can start it as a light subprocess
(``python -c <boot> <this file>``) and kill it when a comparison exceeds its wall-clock limit. The shared
brace scanner comes from ``t3s/data/text.py``, loaded by file path (that module uses only the standard
library).
math-verify's own signal-based timeouts are disabled (they only work on the main thread);
the time limit is enforced by the caller.

Protocol (one JSON object per line): the worker prints ``{"ready": true}`` once warmed up, then
answers each request ``{"id": int, "gold": str, "pred": str}`` with
``{"id": int, "gold_ok": bool, "extracted": str | null, "correct": bool}`` (or ``{"id", "error"}``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any


def _load_text_module() -> Any:
    """``t3s.data.text`` without importing the ``t3s`` package (whose ``__init__`` pulls in torch)."""
    if __package__:  # imported normally (the thread backend): the package is already loaded
        from t3s.data import text

        return text
    path = Path(__file__).resolve().parents[2] / "data" / "text.py"
    spec = importlib.util.spec_from_file_location("_t3s_text", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


braces_balanced = _load_text_module().braces_balanced


def gold_text(gold: str) -> str:
    """Wrap a bare LaTeX gold answer (MATH style, no delimiters) so math-verify parses it as LaTeX."""
    gold = gold.strip()
    if "\\boxed" in gold or re.search(r"(?<!\\)\$", gold) or "\\(" in gold or "\\[" in gold:
        return gold
    return "\\boxed{" + gold + "}"


def _parse(text: str) -> list[Any]:
    from math_verify import parse

    return parse(text, parsing_timeout=None)


@lru_cache(maxsize=8192)
def _parse_gold(gold: str) -> tuple[Any, ...]:
    if not gold.strip() or not braces_balanced(gold):
        return ()
    return tuple(_parse(gold_text(gold)))


def check(gold: str, pred: str) -> dict[str, Any]:
    """Parse ``gold`` (first) and ``pred`` with math-verify and compare them, without any timeout.

    Returns ``{"gold_ok": bool, "extracted": str | None, "correct": bool}``; ``gold_ok`` is False when
    math-verify cannot parse the gold answer, ``extracted`` is None when it cannot parse ``pred``.
    """
    from math_verify import verify

    parsed_gold = _parse_gold(gold)
    if not parsed_gold:
        return {"gold_ok": False, "extracted": None, "correct": False}
    parsed_pred = _parse(pred)
    if not parsed_pred:
        return {"gold_ok": True, "extracted": None, "correct": False}
    correct = verify(list(parsed_gold), parsed_pred, timeout_seconds=None)
    return {"gold_ok": True, "extracted": str(parsed_pred[-1]), "correct": bool(correct)}


def main() -> None:
    """Serve check requests on stdin/stdout until stdin closes."""
    logging.disable(logging.CRITICAL)
    check("1", "\\boxed{1}")  # warm up sympy / the LaTeX parser before announcing readiness
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        req_id = None
        try:
            req = json.loads(line)
            req_id = req.get("id")
            res = check(req["gold"], req["pred"])
        except Exception as err:  # noqa: BLE001 - report every failure to the parent
            res = {"error": repr(err)}
        res["id"] = req_id
        out.write(json.dumps(res) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
