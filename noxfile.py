"""Developer sessions: `nox -s tests` (the test suite) and `nox -s lint`.

Set T3S_TORCH to a pip requirement (CI uses ``torch==2.13.0``, the CPU build on the CI machine's
disk) to install that torch before the package; otherwise pip resolves torch like any user install.
"""

import os

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    torch_spec = os.environ.get("T3S_TORCH")
    if torch_spec:
        session.install(torch_spec)
    session.install("-e", ".[dev]")
    # no -x: one failing (or load-sensitive) test must not hide the rest of the suite
    session.run("pytest", "-q", "--durations=15", *session.posargs, env={"TOKENIZERS_PARALLELISM": "false"})


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", "t3s", "tests", "benchmarks", "noxfile.py")
