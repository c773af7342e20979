"""The GPU check's environment: wheels to carry to a machine with no registry, and an import check there.

    python benchmarks/gpu_env.py prepare   # here: download what the GPU image lacks into benchmarks/.gpu-wheels
    python benchmarks/gpu_env.py imports   # there: import every t3s module; one line naming a missing package

The lent GPU machines run an image with torch, transformers, lightning, peft, pandas, pyarrow and more
(Python 3.12), but without jsonargparse, omegaconf, math-verify or datasets, and reach no registry. ``prepare``
walks t3s's runtime requirements as installed here, keeps those the image does not hold
(:data:`GPU_IMAGE_PACKAGES`, read off the image's package list), and downloads each at the version installed
here as a cp312 manylinux wheel (pure-Python wheels as they are), without dependencies: the walk already
listed them. It prints the folder to carry and checks that wheels plus the tracked tree stay under 64 MiB.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as metadata
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / "benchmarks" / ".gpu-wheels"
CARRY_LIMIT_MIB = 64
#: The GPU image's Python packages (as listed for the lent kinds, 2026-11-17); none of these is carried.
GPU_IMAGE_PACKAGES = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cycler cython einops filelock
flatbuffers fonttools frozenlist fsspec grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis
idna imageio iniconfig jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities lxml markdown
markdown-it-py markupsafe matplotlib mdurl mpmath msgpack multidict networkx ninja numpy packaging pandas pathspec
peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing python-dateutil pytorch-lightning pyyaml regex requests rich safetensors scipy sentencepiece setuptools
shellingham six sortedcontainers sympy tabulate tensorboard tensorboard-data-server threadpoolctl tiktoken tokenizers
torch torchmetrics tqdm transformers triton typer typing-extensions urllib3 werkzeug wheel wrapt xxhash yarl zipp
""".split())
#: Requirements of packages the image already has (newer transformers / huggingface-hub pull them in here).
NOT_NEEDED_THERE = frozenset({"httpx2", "httpcore2", "truststore", "pydantic", "pydantic-core", "annotated-types",
                              "typing-inspection", "kernels", "tomlkit"})
#: Imported by t3s only when a user asks for them (vLLM, kernels, loggers): absent is fine.
OPTIONAL_MODULES = frozenset({"vllm", "liger_kernel", "flash_attn", "flash_attn_interface", "trl", "wandb", "mlflow",
                              "bitsandbytes", "peft"})


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0)).lower()


def runtime_closure(root: str = "t3s") -> dict[str, str]:
    """``{distribution: installed version}`` of ``root``'s runtime requirements here, transitively (no extras
    of ``root``; extras its requirements ask for are followed)."""
    from packaging.markers import Marker

    found: dict[str, str] = {}

    def walk(name: str, extras: tuple[str, ...]) -> None:
        key = _name(name)
        if key in found:
            return
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            return
        found[key] = dist.version
        for req in dist.requires or []:
            spec, _, marker = req.partition(";")
            if marker.strip():
                wanted = re.findall(r'extra\s*==\s*"([^"]+)"', marker)
                env = {"python_version": "3.12", "sys_platform": "linux", "platform_system": "Linux"}
                if wanted and not set(wanted) & set(extras):
                    continue
                if not wanted and not Marker(marker).evaluate(env):
                    continue
            sub = re.search(r"\[([^\]]*)\]", spec)
            walk(_name(spec), tuple(x.strip() for x in sub.group(1).split(",")) if sub else ())

    walk(root, ())
    found.pop(_name(root), None)
    return found


def to_carry() -> dict[str, str]:
    """The runtime requirements the GPU image lacks, at the versions installed here."""
    return {k: v for k, v in sorted(runtime_closure().items())
            if k not in GPU_IMAGE_PACKAGES and k not in NOT_NEEDED_THERE}


def tracked_bytes() -> int:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    return sum((REPO / f.decode()).stat().st_size for f in files if f and (REPO / f.decode()).is_file())


def prepare() -> int:
    packages = to_carry()
    WHEELS.mkdir(parents=True, exist_ok=True)
    for old in WHEELS.glob("*.whl"):
        old.unlink()
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--dest", str(WHEELS),
           "--python-version", "3.12", "--implementation", "cp", "--abi", "cp312", "--abi", "abi3", "--abi", "none",
           "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
           "--platform", "manylinux_2_28_x86_64", "--platform", "any",
           *[f"{name}=={version}" for name, version in packages.items()]]
    done = subprocess.run(cmd)
    if done.returncode:
        print(f"gpu_env prepare: pip download failed (rc {done.returncode})", file=sys.stderr)
        return done.returncode
    wheels = sorted(WHEELS.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels)
    tree = tracked_bytes()
    total_mib = (size + tree) / 2**20
    print(f"carry {len(wheels)} wheels ({size / 2**20:.1f} MiB) for: {', '.join(packages)}")
    print(f"tracked tree {tree / 2**20:.1f} MiB + wheels = {total_mib:.1f} MiB (limit {CARRY_LIMIT_MIB} MiB)")
    print(f"carry: {WHEELS.relative_to(REPO)}")
    if total_mib >= CARRY_LIMIT_MIB:
        print("gpu_env prepare: over the carry limit", file=sys.stderr)
        return 1
    return 0


def declared_requirements() -> list[str]:
    """The distribution names of ``pyproject.toml``'s runtime dependencies (t3s need not be installed)."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [_name(req) for req in project["dependencies"]]


def check_imports() -> int:
    """Every declared runtime dependency is installed and every ``t3s`` module imports; the first missing
    package ends it in one line (exit 3)."""
    advice = (f"run `bash benchmarks/gpu_check.sh --prepare` where a registry is reachable and carry "
              f"{WHEELS.relative_to(REPO)}")
    for name in declared_requirements():
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            print(f"gpu_check: missing package '{name}' (a t3s dependency); {advice}", file=sys.stderr)
            return 3
    import t3s

    optional: set[str] = set()
    modules = [m.name for m in pkgutil.walk_packages(t3s.__path__, "t3s.") if not m.name.endswith("__main__")]
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            missing = (err.name or str(err)).split(".")[0]
            if missing in OPTIONAL_MODULES:
                optional.add(missing)
                continue
            print(f"gpu_check: missing package '{missing}' (imported by {name}); {advice}", file=sys.stderr)
            return 3
    note = f" (optional, absent: {', '.join(sorted(optional))})" if optional else ""
    print(f"imported {len(modules)} t3s modules{note}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("action", choices=("prepare", "imports", "list"))
    args = p.parse_args(argv)
    if args.action == "prepare":
        return prepare()
    if args.action == "list":
        print("\n".join(f"{k}=={v}" for k, v in to_carry().items()))
        return 0
    return check_imports()


if __name__ == "__main__":
    raise SystemExit(main())
