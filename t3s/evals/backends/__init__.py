"""Generation backends, by name: one module each, behind one small interface (:mod:`~t3s.evals.backends.base`).

=============  ==========================================================================================
``hf``         an autoregressive student's Hugging Face model and KV cache (:mod:`~t3s.evals.backends.hf`)
``diffusion``  a diffusion student's own sampler (:mod:`~t3s.evals.backends.diffusion`)
``vllm``       engines in a separate vLLM environment (:mod:`~t3s.evals.backends.vllm`, saved folders only)
=============  ==========================================================================================

A config's ``backend: hf`` (the default) means "the student's own torch sampler": the family names it
(:attr:`t3s.students.base.StudentModule.generation_backend`: ``hf`` for ``ARStudent``, ``diffusion`` for
``DiffusionStudent``), see :func:`resolve_backend`.

Adding a backend: one module here that exports ``BACKEND`` (a :class:`~t3s.evals.backends.base.Backend`)
and its line in :data:`BACKENDS`. :class:`~t3s.evals.backends.sampling.SamplingParams` (what a task asks for)
lives apart so task specs load without torch; this package's ``__init__`` imports nothing heavy.
"""

from __future__ import annotations

import importlib

from t3s.evals.backends.base import Backend, BackendError

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "check_backend_name", "get_backend", "resolve_backend"]

#: Backend name → the module that exports it as ``BACKEND`` (imported on first use).
BACKENDS = {
    "hf": "t3s.evals.backends.hf",
    "diffusion": "t3s.evals.backends.diffusion",
    "vllm": "t3s.evals.backends.vllm",
}

#: What ``backend:`` defaults to: the student family's own torch sampler.
DEFAULT_BACKEND = "hf"


def check_backend_name(name: str) -> str:
    """``name`` if a backend has it, else one :class:`BackendError` line listing the names."""
    if name not in BACKENDS:
        raise BackendError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    return name


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (its module imported now)."""
    return importlib.import_module(BACKENDS[check_backend_name(name)]).BACKEND


def resolve_backend(requested: str, family: str) -> Backend:
    """The backend that samples a student family (its ``generation_backend``) when a config asks for ``requested``.

    ``hf`` (the default) is the family's own torch sampler; another name must serve the family (the vLLM
    backend serves autoregressive students only).
    """
    backend = get_backend(family if requested == DEFAULT_BACKEND else requested)
    if not backend.serves(family):
        raise BackendError(f"the {backend.name} backend does not serve this student family (its own backend is "
                           f"{family!r}); evaluate it with backend {DEFAULT_BACKEND} (its own sampler)")
    return backend
