"""``t3s rrt``: Recovering Residual Transfer, θ_0 + (θ_final − θ_b) as an HF folder.
"""

from __future__ import annotations


def run(base: str, bottleneck: str, final: str, output: str, overwrite: bool = False) -> None:
    """Recovering Residual Transfer: write θ_0 + (θ_final − θ_b) as an HF model folder.

    Args:
        base: θ_0 HF folder.
        bottleneck: θ_b HF folder, or an adapter folder of ``base`` (``<run>/adapter/step_N``).
        final: θ_final HF folder, or an adapter folder of ``base``.
        output: where to write the transferred model: a new or empty folder.
        overwrite: replace ``output`` if it is an earlier ``t3s rrt`` output holding nothing else (never a
            folder t3s did not write).
    """
    from t3s.analysis.rrt import residual_transfer

    residual_transfer(base, bottleneck, final, output, overwrite=overwrite)
    print(f"wrote θ0 + (θfinal − θb) to {output}")
