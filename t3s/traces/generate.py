"""``t3s traces generate``: K sampled traces per problem from a teacher, resumable, one JSON row per trace.

Problems are cut into chunks of ``chunk_size`` problems in file order; a chunk is sampled with its own seed
(``seed`` + chunk index) and appended in one synced write. A rerun keeps the complete chunks already in the
output (dropping a chunk a kill cut short), checks they were made with the same teacher, chat template and
sampling parameters, and samples the rest: a killed run continues where it stopped, gives the rows an
uninterrupted run gives, and never writes a trace twice.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from t3s.traces.files import TracesError, append_rows, read_rows, write_rows

PROMPT_FIELDS = ("prompt", "problem", "question")
ANSWER_FIELDS = ("answer", "gold", "final_answer")
#: distinct sampling seeds per chunk (HFGenerator adds the batch index within a chunk to the seed)
_CHUNK_SEED_STRIDE = 100_003


def read_problems(source: str, prompt_field: str | None = None, answer_field: str | None = None,
                  split: str = "train") -> list[dict[str, Any]]:
    """``[{id, prompt, answer}]`` from a JSONL / JSON / CSV / parquet file or a hub dataset id.

    The prompt is ``prompt_field`` (default: the first of prompt, problem, question present); the gold is
    ``answer_field`` (default: answer, gold, final_answer; may be absent); ids default to the row number.
    """
    from t3s.data.rows import iter_rows

    problems, seen = [], set()
    for number, (where, row) in enumerate(iter_rows(source, split=split)):
        if not isinstance(row, dict):
            raise TracesError(f"{where}: a problem must be a JSON object")
        key = prompt_field or next((k for k in PROMPT_FIELDS if row.get(k)), None)
        if key is None or not isinstance(row.get(key), str) or not row[key].strip():
            wanted = prompt_field or " / ".join(PROMPT_FIELDS)
            raise TracesError(f"{where}: no problem text (field {wanted})")
        gold_key = answer_field or next((k for k in ANSWER_FIELDS if row.get(k) is not None), None)
        if answer_field and row.get(answer_field) is None:
            raise TracesError(f"{where}: no {answer_field!r} field")
        pid = str(row.get("id", number))
        if pid in seen:
            raise TracesError(f"{where}: problem id {pid!r} appears twice")
        seen.add(pid)
        problems.append({"id": pid, "prompt": row[key], "answer": None if gold_key is None else str(row[gold_key])})
    if not problems:
        raise TracesError(f"{source}: no problems")
    return problems


def template_sha256(tokenizer: Any) -> str:
    """sha256 of the teacher's chat template (recorded per row; a resumed run must use the same one)."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise TracesError("the teacher's tokenizer has no chat template; traces are generated in chat form")
    text = template if isinstance(template, str) else repr(sorted(template.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def render(tokenizer: Any, prompt: str, system: str | None, enable_thinking: bool | None) -> str:
    """The prompt under the teacher's chat template, ending with its generation prompt."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    kwargs = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)


def _settings(row: dict[str, Any]) -> tuple:
    return row.get("teacher"), row.get("chat_template_sha256"), row.get("sampling"), row.get("system")


def resume_rows(out: Path, chunks: list[list[dict[str, Any]]], n: int, settings: tuple) -> set[int]:
    """Indices of the chunks complete in ``out``; incomplete chunks and a partial last line are dropped."""
    if not out.exists():
        return set()
    rows = read_rows(out, tolerate_partial=True)
    for row in rows:
        if _settings(row) != settings:
            raise TracesError(f"{out} holds traces made with other settings (teacher, chat template, sampling or "
                              f"system prompt: {_settings(row)}); pass another --out or the same settings")
    by_chunk: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_chunk.setdefault(int(row.get("chunk", -1)), []).append(row)
    complete = set()
    for index, found in by_chunk.items():
        if not 0 <= index < len(chunks):
            raise TracesError(f"{out} holds chunk {index}, which these problems do not have; pass another --out")
        expected = {(p["id"], k) for p in chunks[index] for k in range(n)}
        got = [(r.get("problem_id"), r.get("sample")) for r in found]
        if not set(got) <= expected:
            raise TracesError(f"{out}: chunk {index} holds other problems than the problems file; pass another --out")
        if len(got) == len(set(got)) == len(expected):
            complete.add(index)
    kept = [row for row in rows if int(row.get("chunk", -1)) in complete]
    if len(kept) != len(rows) or out.read_text(encoding="utf-8").count("\n") != len(rows):
        write_rows(out, kept)  # drop what a killed run left half done
    return complete


def generate_traces(
    teacher: str,
    problems: str,
    out: str,
    n: int = 1,
    temperature: float = 0.6,
    top_p: float = 0.95,
    top_k: int | None = None,
    max_new_tokens: int = 32768,
    seed: int = 0,
    batch_size: int = 8,
    chunk_size: int = 8,
    system: str | None = None,
    enable_thinking: bool | None = None,
    prompt_field: str | None = None,
    answer_field: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    progress: bool = True,
) -> Path:
    """Sample ``n`` traces per problem of ``problems`` from ``teacher`` into ``out`` (JSONL), resumably.

    Each row: ``id`` (``<problem id>/<k>``), ``problem_id``, ``sample`` (k), ``prompt``, ``response``, ``answer``
    (the gold), ``num_tokens``, ``hit_limit`` (stopped at ``max_new_tokens``), ``teacher``,
    ``chat_template_sha256``, ``system``, ``sampling`` (n, temperature, top_p, top_k, max_new_tokens, seed) and
    ``chunk``. ``fit --data.path`` reads the file as it is (``prompt`` + ``response``).
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from t3s.evals.backends.hf import HFGenerator
    from t3s.evals.backends.sampling import SamplingParams
    from t3s.ops.causal_lm import DTYPES
    from t3s.ops.hf_folders import check_hf_folder, looks_local
    from t3s.students.adapter_weights import as_model_folder

    if chunk_size < 1 or batch_size < 1:
        raise TracesError("--chunk_size and --batch_size must be >= 1")
    try:
        params = SamplingParams(n=n, temperature=temperature, top_p=top_p, top_k=top_k,
                                max_new_tokens=max_new_tokens, seed=seed)
    except ValueError as err:
        raise TracesError(f"traces generate: {err}") from None
    items = read_problems(problems, prompt_field, answer_field)
    teacher_folder = as_model_folder(teacher)
    if looks_local(teacher_folder):
        check_hf_folder(teacher_folder)
    tokenizer = AutoTokenizer.from_pretrained(teacher_folder, trust_remote_code=trust_remote_code)
    settings = (teacher, template_sha256(tokenizer), params.to_dict(), system)
    chunks = [items[i : i + chunk_size] for i in range(0, len(items), chunk_size)]
    out_path = Path(out)
    done = resume_rows(out_path, chunks, n, settings)
    todo = [c for c in range(len(chunks)) if c not in done]
    total = len(items) * n
    if not todo:
        print(f"{out}: all {total} traces are there already")
        return out_path

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available()
                       else "cpu" if device == "auto" else device)
    model = AutoModelForCausalLM.from_pretrained(
        teacher_folder, dtype="auto" if dtype == "auto" else DTYPES[dtype], trust_remote_code=trust_remote_code
    ).to(dev)
    generator = HFGenerator(model, tokenizer, batch_size=batch_size, show_progress=False)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tqdm(total=total, initial=sum(len(chunks[c]) for c in done) * n, desc="traces", unit="trace",
              disable=not progress) as bar:
        for c in todo:
            chunk = chunks[c]
            prompts = [render(tokenizer, p["prompt"], system, enable_thinking) for p in chunk]
            ids = [list(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in prompts]
            chunk_params = SamplingParams(**{**params.to_dict(), "seed": seed + _CHUNK_SEED_STRIDE * c})
            generations = generator.generate(ids, chunk_params)
            rows = []
            for problem, samples in zip(chunk, generations):
                for k, g in enumerate(samples):
                    rows.append({
                        "id": f"{problem['id']}/{k}", "problem_id": problem["id"], "sample": k,
                        "prompt": problem["prompt"], "response": g.text, "answer": problem["answer"],
                        "num_tokens": g.num_tokens, "hit_limit": g.hit_limit, "teacher": teacher,
                        "chat_template_sha256": settings[1], "system": system, "sampling": params.to_dict(),
                        "chunk": c,
                    })
            append_rows(out_path, rows)
            bar.update(len(rows))
    print(f"wrote {total} traces ({len(items)} problems × {n}) to {out}")
    return out_path
