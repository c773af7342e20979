"""Process and file helpers (no tensor ops): ``env_refs`` (``${oc.env:VAR}`` kept as the reference in saved
configs), ``files`` (file modes of what t3s writes), ``workers`` (local worker processes on one process group),
``threads`` (CPU intra-op threads sized to the model), ``seeds`` (stable seeds from labels, standard library
only). Tensor ops live in :mod:`t3s.ops`.
"""
