"""``${oc.env:VAR}`` in configs: kept as written in the ``config.yaml`` a run saves, resolved when it is read.

OmegaConf resolves ``${oc.env:HF_TOKEN}`` while the config is parsed, so the config Lightning saves beside a
run would hold the token itself — and run folders get copied, shared and uploaded. :func:`restore_env_references`
puts the interpolation text back into the saved values; :func:`resolve_env_references` resolves it again (from
this process's environment) for the commands that read a run's ``config.yaml`` (``t3s evaluate``, ``t3s
diagnose``). Standard library only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

#: ``${oc.env:VAR}`` or ``${oc.env:VAR,default}`` (OmegaConf's syntax).
ENV_REFERENCE = re.compile(r"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)(?:,([^}]*))?\}")

#: Values shorter than this are put back only where a whole value equals them (not inside other text): a short
#: value such as ``0`` or ``cpu`` occurs by chance in unrelated strings.
MIN_EMBEDDED_LENGTH = 8


def env_references(texts: Iterable[str]) -> dict[str, str]:
    """Resolved value → the ``${oc.env:…}`` text that produced it, for every reference in ``texts`` whose
    variable is set (to a non-empty value) in this process."""
    found: dict[str, str] = {}
    for text in texts:
        for match in ENV_REFERENCE.finditer(text):
            value = os.environ.get(match.group(1))
            if value:
                found.setdefault(value, match.group(0))
    return found


def restore_env_references(value: Any, references: dict[str, str]) -> Any:
    """``value`` (a parsed config) with every resolved ``${oc.env:…}`` value replaced by its reference text."""
    if isinstance(value, dict):
        return {k: restore_env_references(v, references) for k, v in value.items()}
    if isinstance(value, list):
        return [restore_env_references(v, references) for v in value]
    if isinstance(value, str):
        if value in references:
            return references[value]
        for secret, text in references.items():
            if len(secret) >= MIN_EMBEDDED_LENGTH:
                value = value.replace(secret, text)
    return value


def resolve_env_references(value: Any) -> Any:
    """``value`` with every ``${oc.env:VAR[,default]}`` in its strings replaced by the variable's value here (its
    default, or empty text, when unset): how a saved ``config.yaml`` is read back."""
    if isinstance(value, dict):
        return {k: resolve_env_references(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env_references(v) for v in value]
    if isinstance(value, str) and "${oc.env:" in value:
        return ENV_REFERENCE.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), value)
    return value
