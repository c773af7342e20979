"""Teacher traces from problems: ``t3s traces generate | verify | select`` (README, "Bring your own traces").

* :mod:`~t3s.traces.generate` samples K traces per problem from a teacher (the HF backend of ``t3s evaluate``),
  resumably, recording the chat template and sampling parameters in every row;
* :mod:`~t3s.traces.verify` grades each trace against the gold with t3s's graders and marks truncated ones;
* :mod:`~t3s.traces.select` keeps N of them (verified, shortest, or random) in a file ``fit --data.path`` reads.
"""

from t3s.traces.files import TracesError

__all__ = ["TracesError"]
