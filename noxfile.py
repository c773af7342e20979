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
    # no -x: one failing (or load-sensitive) test must not hide the rest of the suite.
    # -n auto: one pytest worker per core (the tests run one intra-op thread each; tests/conftest.py), a test
    # file's tests on one worker (--dist loadfile) so module fixtures are built once. T3S_TEST_WORKERS=0
    # runs everything in this process (e.g. under a debugger).
    workers = os.environ.get("T3S_TEST_WORKERS", "auto")
    parallel = ["-n", workers, "--dist", "loadfile"] if workers != "0" else []
    session.run("pytest", "-q", "--durations=15", *parallel, *session.posargs,
                env={"TOKENIZERS_PARALLELISM": "false"})


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", "t3s", "tests", "benchmarks", "noxfile.py")
