"""``t3s`` / ``python -m t3s``: one dispatcher for the training commands and the analysis commands.

Training goes through LightningCLI (:mod:`t3s.train_cli`, omegaconf mode)::

    t3s fit                               # the shipped demo config (toy)
    t3s fit --config toy-small            # a shipped config by name (t3s --help lists them)
    t3s fit --config configs/tiny.yaml    # or any config file

The analysis commands share the training configs: ``score``, ``rrt``, ``grade``, ``report``, ``compare``.

This module imports only the standard library at the top: each command imports what it needs when it
runs, so ``t3s --help`` and ``t3s grade`` never load torch or Lightning. Process-wide state (warning and
log filters, the toy resolvers) is set in one place, :func:`configure_process`, when :func:`main` starts.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from argparse import ArgumentError
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from t3s.resources import find_config, overlay_base, packaged_configs
from t3s.usage import (
    DEBUG_ENV,
    DEFAULT_CONFIG_NAME,
    ConfigError,
    UsageError,
    error_line,
    usage_error_line,
    user_errors,
)

#: The LightningCLI commands, with their one-line help (``t3s fit --help`` lists every option).
TRAINING_COMMANDS = {
    "fit": "train a student; with T3S and no score cache, the whole recipe: probe → θ_b → score → T3S → report",
    "validate": "teacher-forced loss of a model on the validation traces",
    "test": "teacher-forced loss of a model on the test traces",
    "predict": "Lightning's predict loop on the configured data",
}

# ----------------------------------------------------------------- process-wide state
class _OnceFilter(logging.Filter):
    """Drops Lightning's advertising tip and prints each other info line once per process (several trainers
    run in one recipe, each announcing the same GPU/TPU availability)."""

    DROP = ("💡 Tip:", "TPU available:", "HPU available:")

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(self.DROP) or message in self.seen:
            return False
        self.seen.add(message)
        return True


def process_rank() -> int:
    """This process's global rank: Lightning's once it has set it, else the launcher's environment (0 alone)."""
    rank_zero = sys.modules.get("lightning.fabric.utilities.rank_zero")
    rank = getattr(getattr(rank_zero, "rank_zero_only", None), "rank", None)
    if rank is not None:
        return int(rank)
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


class _RankZeroStderr(logging.StreamHandler):
    """t3s's own log lines (``dropped 17 of 33 traces …``), on standard error, printed by rank 0 only: every rank
    loads the same data and reaches the same state, so the other ranks would print the same lines again."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))
        self.setLevel(logging.WARNING)  # what Python's last-resort handler printed before this one existed

    @property  # type: ignore[override]
    def stream(self) -> Any:  # the current sys.stderr (redirected by tests and notebooks), like the last resort
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        if process_rank() == 0:
            super().emit(record)


_CONFIGURED = False


#: Commands that need neither torch nor Lightning (nor the toy world's resolvers, which import transformers).
LIGHT_COMMANDS = frozenset({"grade", "report"})


def configure_process(toy_resolvers: bool = True) -> None:
    """Everything the command line sets for the whole process, in one place (idempotent).

    - warning filters for Lightning messages that are expected here (students step their optimizer by
      hand; ``fit`` without a validation set; a torch pytree deprecation inside Lightning);
    - a log filter that drops Lightning's tip and repeated info lines; t3s's own warnings printed by rank 0
      only; no Hugging Face download/load/save bars (``HF_HUB_DISABLE_PROGRESS_BARS``, unless set);
    - the toy world's OmegaConf resolvers ``${toy_world:…}`` and ``${toy_base:…}`` (unless ``toy_resolvers``
      is false: :data:`LIGHT_COMMANDS` read no config).
    """
    global _CONFIGURED
    # transformers' "Loading weights" / "Writing model shards" bars at every checkpoint and θ_b reload
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for message in (
        "Using ModelCheckpoint with manual optimization",  # the state after the step is the one we save
        "Total length of `DataLoader` across ranks is zero",  # fit without val_path: benchmarks evaluate
        r".*isinstance\(treespec, LeafSpec\)",  # Lightning on torch ≥ 2.10, not ours to fix
        "LightningCLI's args parameter is intended",  # we always pass args explicitly
        r"The '\w+_dataloader' does not have many workers",  # in-memory token rows: workers buy nothing
    ):
        warnings.filterwarnings("ignore", message=message)
    if not _CONFIGURED:
        _CONFIGURED = True
        logging.getLogger("t3s").addHandler(_RankZeroStderr())
        for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                     "lightning.fabric.utilities.seed"):  # "Seed set to 0" once, not once per recipe phase
            logging.getLogger(name).addFilter(_OnceFilter())
    if toy_resolvers:
        from t3s.toy.base import register_resolvers

        register_resolvers()


# ----------------------------------------------------------------- configs
def expand_config_names(args: Sequence[str]) -> list[str]:
    """``--config toy-small`` → the shipped ``t3s/configs/toy-small.yaml``; paths are kept as given.

    Raises:
        UsageError: an overlay config (``qwen3-32b``) given with no config before it.
    """
    out = list(args)
    after_a_config = False
    for i, a in enumerate(out):
        if a in ("-c", "--config") and i + 1 < len(out):
            given, index, prefix = out[i + 1], i + 1, ""
        elif a.startswith("--config="):
            given, index, prefix = a.removeprefix("--config="), i, "--config="
        else:
            continue
        path = find_config(given)
        base = overlay_base(path)
        if base and not after_a_config:
            raise UsageError(f"{given} is an overlay on {base}, not a whole config: give it after that config, "
                             f"--config {base} --config {given}")
        after_a_config = True
        out[index] = prefix + str(path)
    return out


#: The top-level keys of a ``fit`` config (LightningCLI's, plus t3s's ``--ckpt_path`` and ``--eval_mode``).
FIT_KEYS = ("seed_everything", "trainer", "model", "data", "ckpt_path", "eval_mode", "config", "print_config", "help")
#: What a ``fit`` command line may start an option with: the config keys and ``--eval.<argument>``
#: (the BenchmarkCallback's settings, :mod:`t3s.eval_options`).
FIT_OPTIONS = (*FIT_KEYS, "eval")


def config_files(args: Sequence[str]) -> list[str]:
    """The ``--config`` files of a command line (after :func:`expand_config_names`)."""
    return [args[i + 1] if a in ("-c", "--config") else a.removeprefix("--config=")
            for i, a in enumerate(args) if (a in ("-c", "--config") and i + 1 < len(args)) or a.startswith("--config=")]


def precheck_training_args(args: Sequence[str], fit: bool = True) -> None:
    """What can be checked without torch or Lightning: the class paths the configs and options name (the trust
    boundary, :mod:`t3s.trust`) and, for ``fit``, the top-level keys of the config files and options.

    Raises:
        ConfigError / UsageError: one line naming the file or option.
    """
    import difflib

    from t3s.trust import check_class_paths

    files = config_files(args)
    check_class_paths(files, args)
    if not fit:
        return
    import yaml

    for file in files:
        try:
            loaded = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError, OSError):
            continue  # the parser names the file and the line
        for key in loaded if isinstance(loaded, dict) else []:
            if key not in FIT_KEYS:
                close = difflib.get_close_matches(str(key), FIT_KEYS, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(f"{file}: unknown top-level key {key!r}{hint}; a fit config has "
                                  f"{', '.join(FIT_KEYS[:6])}")
    for arg in args:
        if arg.startswith("--") and arg != "--":
            top = arg[2:].split("=", 1)[0].split(".", 1)[0]
            if top not in FIT_OPTIONS:
                close = difflib.get_close_matches(top, FIT_OPTIONS, n=1)
                raise UsageError(f"unknown option {arg.split('=', 1)[0]}"
                                 + (f" (did you mean --{close[0]}?)" if close else ""))


def load_datamodule(config: str, overrides: dict[str, Any] | None = None) -> Any:
    """Instantiate the ``data`` section of a training config (interpolations resolved from the config's
    folder, relative data paths anchored there, like ``fit`` does)."""
    from jsonargparse import ArgumentParser
    from omegaconf import OmegaConf

    from t3s.data import TeacherTraceDataModule
    from t3s.data.args import DATA_FLAT_KEYS

    path = find_config(config).resolve()
    cwd = Path.cwd()
    os.chdir(path.parent)  # as jsonargparse does for ``fit``: interpolations mean the config's folder
    try:  # only the data section: resolving ``model`` could build a toy θ_0 that scoring does not need
        loaded = OmegaConf.load(path)
        data = dict(OmegaConf.to_container(loaded.data, resolve=True) if "data" in loaded else {})
    finally:
        os.chdir(cwd)
    from jsonargparse import Namespace, dict_to_namespace

    from t3s.flat_keys import merge_sections, nest_section
    from t3s.train_cli import anchor_data_paths

    data = nest_section(data, DATA_FLAT_KEYS, "data")
    anchored = Namespace(data=dict_to_namespace(data))
    anchor_data_paths(anchored, [path])
    data = merge_sections(anchored.data.as_dict(), nest_section(overrides or {}, DATA_FLAT_KEYS, "data"))
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(TeacherTraceDataModule, "data")
    try:
        namespace = parser.parse_object({"data": data})
    except Exception as err:  # jsonargparse reports the offending key
        raise ConfigError(f"{config}: invalid data section: {str(err).splitlines()[0]}") from None
    return parser.instantiate_classes(namespace).data


# ----------------------------------------------------------------- analysis commands
def score_command(
    config: str,
    base: str,
    bottleneck: str,
    output: str,
    device: str = "auto",
    dtype: str = "float32",
    micro_batch_size: int | None = None,
    chunk_size: int = 2048,
    trust_remote_code: bool = False,
    checkpoints: list[str] | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Score every training token under θ_0 and θ_b and write the Δc cache T3S reads.

    Args:
        config: the training config whose ``data`` section defines the traces (same file as ``fit``).
        base: θ_0, an HF folder or hub id (e.g. ``<run>/hf/step_0``).
        bottleneck: θ_b, an HF folder (e.g. ``<run>/hf/step_20``) or a LoRA/DoRA adapter folder
            (``<run>/adapter/step_20``: merged into its base, written to ``<folder>/merged``).
        output: directory for ``scores.safetensors``, ``meta.json`` and ``summary.json``.
        device: ``auto``, ``cpu`` or ``cuda``.
        dtype: weights dtype for scoring (``float32`` or ``bfloat16``).
        micro_batch_size: rows per forward pass (default: the data config's).
        chunk_size: rows per chunk of the log-prob kernel.
        trust_remote_code: allow the checkpoints' own model code (e.g. Ling-mini-2.0 as a selector).
        checkpoints: also score these HF folders or run directories (``<run>/hf/step_*``, or ``<run>``: all its
            ``hf/step_N``) into ``<output>/trajectories`` (one file per checkpoint, a per-group summary).
        data: options of the config's ``data`` section to override, as ``fit`` spells them
            (``--data.limit 32 --data.max_length 1024``).
    """
    from t3s.ops.hf_folders import check_hf_folder, looks_local
    from t3s.scoring.scorer import score
    from t3s.students.adapter_weights import as_model_folder  # an adapter folder: base + adapter, merged

    for option, source in (("--base", base), ("--bottleneck", bottleneck)):
        if looks_local(source) and not Path(source).expanduser().exists():  # not a hub id: say so before loading
            raise ConfigError(f"{option} {source}: no such model folder")
    base, bottleneck = as_model_folder(base), as_model_folder(bottleneck)
    for source in (base, bottleneck):
        if looks_local(source):
            check_hf_folder(source)
    datamodule = load_datamodule(config, data)
    score(datamodule, base, bottleneck, output, device=device, dtype=dtype, micro_batch_size=micro_batch_size,
          chunk_size=chunk_size, trust_remote_code=trust_remote_code)
    print(f"wrote the score cache to {output}; train with model.init_args.selection.init_args.scores={output}")
    if checkpoints:
        from t3s.analysis.trajectories import expand_checkpoints, score_trajectories
        from t3s.selection.scores import ScoreCache

        found = expand_checkpoints(checkpoints)
        missing = [str(folder) for _, folder in found if not (folder / "config.json").is_file()]
        if not found or missing:
            raise ConfigError(f"score --checkpoints: not HF folders or run directories: {missing or checkpoints}")
        cache = ScoreCache.load(output)
        summary = score_trajectories(datamodule, found, Path(output) / "trajectories", cache.base_logprob, cache.bottleneck_logprob,
                                     micro_batch_size=micro_batch_size, chunk_size=chunk_size, device=device)
        for entry in summary["steps"]:
            conf = entry["confidence"]
            print(f"step {entry['step']:>6}  c(anchor) {conf['anchor']['mean']:+.3f}  c(yet-to-learn) "
                  f"{conf['yet_to_learn']['mean']:+.3f}  below θ0 {conf['yet_to_learn']['below_base']:.2f}")
        print(f"wrote c_t of {len(found)} checkpoint(s) to {Path(output) / 'trajectories'}")


def rrt_command(base: str, bottleneck: str, final: str, output: str, overwrite: bool = False) -> None:
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


def grade_command(
    task: str,
    input: str,
    response_field: str = "response",
    gold_field: str = "gold",
    output: str | None = None,
    hit_limit_field: str | None = None,
) -> None:
    """Re-grade a JSONL file of generations (ours or another tool's); prints the accuracy.

    Args:
        task: grader (``aime``, ``math``, ``mc``, ``exact``) or a task name (``aime24``, …) / YAML path.
        input: JSONL with one generation per line.
        response_field: field holding the model's response.
        gold_field: field holding the gold answer.
        output: where to write one verdict per input row (same order; adds extracted, correct, truncated).
        hit_limit_field: optional boolean field marking responses cut at the token limit.
    """
    from t3s.evals.grade_cli import grade_file

    try:
        grade_file(task, input, response_field, gold_field,
                   output or str(Path(input).with_suffix(".verdicts.jsonl")), hit_limit_field=hit_limit_field)
    except ValueError as err:  # grade_file's documented input errors: ``file:line: …``
        raise ConfigError(str(err)) from None


def report_command(runs: list[str], output: str | None = None) -> None:
    """Figures and a comparison table (start / min / final / best accuracy, θ_b) from finished runs.

    Args:
        runs: run directories holding logged scalars, TensorBoard event files or a CSVLogger's ``metrics.csv``
            (``runs/tiny/sft/version_0``), or a recipe's ``version_<k>`` folder (its phases ``probe``, ``t3s``
            are compared).
        output: output directory (default: ``report/`` inside the first run directory).
    """
    missing = [run for run in runs if not Path(run).is_dir()]
    if missing:
        raise ConfigError(f"{missing[0]}: no such directory (give run folders, e.g. runs/tiny/sft/version_0)")
    from t3s.analysis.report import write_report

    print(f"wrote {write_report(runs, output)}")


def compare_command(config: str, seeds: list[int], output: str, overrides: list[str] | None = None) -> None:
    """The paper's comparison: SFT, T3S, −T3S, random mask and RRT, same steps, LR and data order, per seed.

    Args:
        config: a training config with a ``BenchmarkCallback`` (training accuracy on), e.g. configs/toy.yaml.
        seeds: seeds of the data order and evaluation sampling (θ_0 is shared).
        output: directory for the runs, ``comparison.md`` and the figures.
        overrides: training options applied on top of ``config`` in every run, as ``KEY=VALUE`` with the
            keys ``fit`` takes (e.g. ``model.init_args.lr=3e-4 trainer.max_steps=120``).
    """
    extra = [f"--{item.removeprefix('--')}" for item in overrides or []]
    for item in extra:
        if "=" not in item:
            raise ConfigError(f"compare --overrides: expected KEY=VALUE, got {item[2:]!r}")
    precheck_training_args([str(find_config(config)), *extra])
    from t3s.recipe import Comparison
    from t3s.train_cli import phases_for_seed

    Comparison(phases_for_seed(str(find_config(config)), extra, output), list(seeds), output).run()


def evaluate_command(
    targets: list[str],
    tasks: list[str] | None = None,
    devices: int = 1,
    steps: list[int] | None = None,
    train_accuracy: bool | None = None,
    n: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    max_new_tokens: int | None = None,
    batch_size: int | None = None,
    output: str | None = None,
    backend: str | None = None,
    python: str | None = None,
    vllm: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
) -> None:
    """Evaluate checkpoints outside training: every hf/step_N of a run that has no result yet, or HF folders.

    Args:
        targets: phase run directories (holding ``hf/step_N`` and ``config.yaml``), HF model folders or
            LoRA/DoRA adapter folders (merged into their base, written to ``<folder>/merged``).
        tasks: benchmark tasks (names, YAML paths) instead of the run's own; required for a plain HF folder.
        devices: worker processes, one per device (a GPU each when there are GPUs), data-parallel over items.
        steps: evaluate only these steps.
        train_accuracy: override the run's training-accuracy setting.
        n: samples per prompt (overrides the tasks' sampling).
        temperature: sampling temperature (0: greedy).
        top_p: nucleus sampling.
        max_new_tokens: generation budget per sample.
        batch_size: prompts per generation batch.
        output: where outputs go (default: the run directory / HF folder itself); with several targets, each
            goes to ``output/<its folder name>``.
        backend: hf or vllm (default: the run's BenchmarkCallback backend, else hf).
        python: interpreter of the vLLM environment (default: this one; never taken from the run's config.yaml);
            README, "Evaluating with vLLM".
        vllm: vllm.LLM options, e.g. --vllm.tensor_parallel_size 2 --vllm.gpu_memory_utilization 0.9
            (also max_model_len, dtype, enable_prefix_caching, …); on top of the run's callback `vllm:` mapping.
        trust_remote_code: run the checkpoints' own model code (never taken from the run's config.yaml).
    """
    from t3s.evals.offline import EvaluationError, evaluate_checkpoints, plan_evaluation
    from t3s.students.adapter_weights import as_model_folder  # an adapter folder: base + adapter, merged

    sampling = {k: v for k, v in (("n", n), ("temperature", temperature), ("top_p", top_p),
                                  ("max_new_tokens", max_new_tokens)) if v is not None}
    outputs: list[str | Path | None] = [output] * len(targets)
    if output and len(targets) > 1:  # one ledger per target: a shared one would mark the second as done
        names = [Path(t).resolve().name for t in targets]
        if len(set(names)) < len(names):
            raise EvaluationError(f"--output with several targets writes each to {output}/<folder name>, and "
                                  f"these share a name: {sorted({n for n in names if names.count(n) > 1})}")
        outputs = [Path(output) / name for name in names]
    for target, out in zip(targets, outputs):
        plan = plan_evaluation(as_model_folder(target), tasks=tasks, sampling=sampling, steps=steps,
                               train_accuracy=train_accuracy, batch_size=batch_size, output=out, backend=backend,
                               python=python, vllm=vllm, trust_remote_code=trust_remote_code)
        rows = evaluate_checkpoints(plan, devices=devices)
        for row in rows:
            accuracy = next((v for k, v in row["metrics"].items() if k.startswith("avg@")), float("nan"))
            print(f"step {row['step']:>6}  {row['task']:<20} accuracy {accuracy:.4f}")
        print(f"{target}: {len(rows)} new result(s) in {plan.output / 'eval' / 'results.jsonl'}")


def diagnose_command(
    run: str,
    bottleneck_step: int | None = None,
    threshold: float = 0.0,
    probe_traces: int = 32,
    lr: float | None = None,
    devices: int = 1,
    micro_batch_size: int | None = None,
    output: str | None = None,
) -> None:
    """Trajectory diagnostics of a finished phase: group confidences, gradient interaction, loss transfer.

    Args:
        run: a phase run directory (``hf/step_N``, ``config.yaml``; e.g. ``<recipe run>/probe``).
        bottleneck_step: θ_b's step (default: read from the phase's training-accuracy curve, as the recipe does).
        threshold: anchors are tokens with Δc = c(θ_b) − c(θ_0) above this (T3S: 0).
        probe_traces: traces in the fixed probe batch of the gradient and transfer measurements.
        lr: learning rate of the one-step intervention (default: the run's peak ``lr``).
        devices: worker processes (one per GPU when there are GPUs; gloo on CPU).
        micro_batch_size: rows per forward pass (default: the run's data config).
        output: where the JSON and figures go (default: ``<run>/diagnostics``).
    """
    from t3s.analysis.diagnose import JSON_FILE, plan_diagnostics, run_diagnostics

    plan = plan_diagnostics(run, bottleneck_step=bottleneck_step, threshold=threshold, probe_traces=probe_traces,
                            lr=lr, micro_batch_size=micro_batch_size, output=output)
    report = run_diagnostics(plan, devices=devices)
    for entry in report["steps"]:
        acc = entry["train_accuracy"]
        conf = entry["confidence"]
        print(f"step {entry['step']:>6}  acc {'  -  ' if acc is None else f'{acc:.3f}'}  "
              f"c(anchor) {conf['anchor']['mean']:+.3f}  c(ytl) {conf['yet_to_learn']['mean']:+.3f}  "
              f"ytl below θ0 {conf['yet_to_learn']['below_base']:.2f}  |g_a|/|g_o| {entry['grad_norm_ratio']:.2f}  "
              f"cos {entry['grad_cosine']:+.2f}")
    print(f"θ_b = step {report['bottleneck_step']} ({report['bottleneck_source']}); wrote {plan.output / JSON_FILE} "
          f"and {len(report['figures'])} figures in {report['seconds']:.0f} s")


def traces_command() -> None:
    """teacher traces from problems: generate | verify | select (`t3s traces --help`)"""


SUBCOMMANDS: dict[str, Callable[..., Any]] = {
    "evaluate": evaluate_command,
    "score": score_command,
    "diagnose": diagnose_command,
    "rrt": rrt_command,
    "grade": grade_command,
    "report": report_command,
    "compare": compare_command,
    "traces": traces_command,
}


def run_subcommand(name: str, args: Sequence[str]) -> Any:
    """Parse ``args`` against the subcommand's signature (docstring as help) and run it."""
    from jsonargparse import ArgumentParser

    if name == "traces":  # actions of their own: generate | verify | select
        from t3s.traces.cli import traces_main

        return traces_main(args)
    function = SUBCOMMANDS[name]
    parser = ArgumentParser(prog=f"t3s {name}", description=(function.__doc__ or "").split("\n")[0],
                            allow_abbrev=False, exit_on_error=False)
    parser.add_function_arguments(function, as_positional=False)
    positional = {"report": "--runs", "evaluate": "--targets", "diagnose": "--run"}.get(name)
    args = _collect_list(list(args), positional, "--seeds", "--overrides", "--tasks", "--steps", "--checkpoints",
                         single=name == "diagnose")
    if name == "evaluate":
        args = _collect_mapping(args, "--vllm")
    if name == "score":
        args = _collect_mapping(args, "--data")
    try:
        cfg = parser.parse_args(args)
    except ArgumentError as err:
        options = [o for o in parser._option_string_actions if o.startswith("--")]
        raise UsageError(f"t3s {name}: {usage_error_line(str(err), options)}") from None
    return function(**cfg.as_dict())


def _collect_list(args: list[str], positional: str | None, *flags: str, single: bool = False) -> list[str]:
    """Shell-style lists: ``report RUN RUN --output D`` and ``--seeds 0 1 2`` become JSON list values."""
    out: list[str] = []
    i = 0
    if positional is not None:
        n = next((j for j, a in enumerate(args) if a.startswith("-")), len(args))
        if n:  # ``single``: one positional value, given as it is
            out += [positional, args[0] if single and n == 1 else json.dumps(args[:n])]
        i = n
    while i < len(args):
        if args[i] in flags:
            j = i + 1
            while j < len(args) and not args[j].startswith("--"):
                j += 1
            values = args[i + 1 : j]
            if len(values) == 1 and values[0].startswith("["):  # already a list literal
                out += [args[i], values[0]]
                i = j
                continue
            out += [args[i], json.dumps([int(v) if v.lstrip("-").isdigit() else v for v in values])]
            i = j
        else:
            out.append(args[i])
            i += 1
    return out


def _collect_mapping(args: list[str], flag: str) -> list[str]:
    """``--vllm.tensor_parallel_size 2 --vllm.dtype=bfloat16`` become one ``--vllm '{"tensor_parallel_size": 2, …}'``
    (values read as YAML scalars: numbers, booleans, strings)."""
    import yaml

    mapping: dict[str, Any] = {}
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith(flag + "."):
            key, eq, value = arg[len(flag) + 1 :].partition("=")
            if not eq:
                if i + 1 >= len(args):
                    raise UsageError(f"{arg} needs a value")
                value, i = args[i + 1], i + 1
            mapping[key] = yaml.safe_load(value)
        elif arg == flag and i + 1 < len(args):
            mapping.update(yaml.safe_load(args[i + 1]) or {})
            i += 1
        else:
            out.append(arg)
        i += 1
    return [*out, flag, json.dumps(mapping)] if mapping else out


# ----------------------------------------------------------------- help and entry point
def shipped_config_names() -> list[str]:
    """The shipped configs' names, an overlay followed by what it extends (``qwen3-32b (after qwen3)``)."""
    names = []
    for name in packaged_configs():
        base = overlay_base(find_config(name))
        names.append(f"{name} (after {base})" if base else name)
    return names


def help_text() -> str:
    """``t3s --help``: every command with one line, and the shipped configs."""
    width = max(map(len, [*TRAINING_COMMANDS, *SUBCOMMANDS])) + 2
    lines = [
        "usage: t3s COMMAND [options]        (python -m t3s COMMAND … is the same)",
        "",
        "Continual reasoning distillation with Training-Trajectory-Aware Token Selection (T3S).",
        "",
        "training (LightningCLI; `t3s fit --help` lists every option):",
        *(f"  {name:<{width}}{text}" for name, text in TRAINING_COMMANDS.items()),
        "",
        "analysis (`t3s COMMAND --help` for the options):",
        *(f"  {name:<{width}}{(fn.__doc__ or '').strip().splitlines()[0]}" for name, fn in SUBCOMMANDS.items()),
        "",
        f"shipped configs (--config NAME; the default is {DEFAULT_CONFIG_NAME}): {', '.join(shipped_config_names())}",
        "outputs (runs/…) are written relative to the working directory; caches go to $T3S_CACHE",
        "(default $XDG_CACHE_HOME/t3s or ~/.cache/t3s). T3S_DEBUG=1 shows tracebacks of user errors.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Dispatch to an analysis subcommand or to LightningCLI; user mistakes exit 2 with one line."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(help_text())
        return
    if args[0] not in SUBCOMMANDS and args[0] not in TRAINING_COMMANDS:
        close = [c for c in [*TRAINING_COMMANDS, *SUBCOMMANDS] if c.startswith(args[0][:2])]
        hint = f" (did you mean {close[0]}?)" if close else ""
        print(f"error: unknown command {args[0]!r}{hint}; `t3s --help` lists the commands", file=sys.stderr)
        raise SystemExit(2)
    try:
        if args[0] in SUBCOMMANDS:
            configure_process(toy_resolvers=args[0] not in LIGHT_COMMANDS)
            run_subcommand(args[0], args[1:])
        else:  # the command line is checked before torch and Lightning are imported (seconds, minutes when loaded)
            given = expand_config_names(args[1:] if args[0] == "fit" else args)
            precheck_training_args(given, fit=args[0] == "fit")
            configure_process()
            if args[0] == "fit":
                from t3s.train_cli import fit_command

                fit_command(given)
            else:
                from t3s.train_cli import train_cli

                train_cli(given)
    except Exception as err:
        if type(err).__name__ == "Terminated" and hasattr(err, "exit_code"):  # fit stopped by SIGTERM, saved
            if not getattr(err, "rank", 0):
                print(f"error: {err}", file=sys.stderr)
            raise SystemExit(err.exit_code) from None
        if not isinstance(err, user_errors()) or os.environ.get(DEBUG_ENV):
            raise
        print(f"error: {error_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None


def __getattr__(name: str) -> Any:
    # The LightningCLI class and its entry point live in t3s.train_cli (they import torch and Lightning).
    if name in ("T3SCLI", "train_cli"):
        from t3s import train_cli

        return getattr(train_cli, name)
    raise AttributeError(f"module 't3s.cli' has no attribute {name!r}")


if __name__ == "__main__":
    main()
