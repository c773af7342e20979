"""Trace sources: folders, save_to_disk folders, hub-repo clones with subsets, and mixed source lists."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from t3s.data import FIELD_PRESETS, TeacherTraceDataModule, TraceDataError, load_records
from t3s.data.rows import iter_rows

datasets = pytest.importorskip("datasets", reason="the datasets library is needed for save_to_disk folders")


def rows(tag: str, n: int) -> list[dict]:
    return [{"id": f"{tag}{i}", "prompt": f"{tag} q{i}", "reasoning": f"r{i}", "answer_text": f"a{i}"}
            for i in range(n)]


def write_jsonl(path: Path, items: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    return path


def ids(records: list) -> list[str]:
    return [r.id for r in records]


def test_folder_of_files_reads_every_format_and_the_split_files(tmp_path: Path) -> None:
    folder = tmp_path / "traces"
    write_jsonl(folder / "a.jsonl", rows("j", 2))
    with (folder / "b.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows("c", 1)[0]))
        writer.writeheader()
        writer.writerows(rows("c", 2))
    datasets.Dataset.from_list(rows("p", 2)).to_parquet(str(folder / "sub" / "c.parquet"))
    (folder / ".hidden.jsonl").write_text(json.dumps(rows("h", 1)[0]) + "\n")
    records, _ = load_records(folder, FIELD_PRESETS["default"])
    assert ids(records) == ["j0", "j1", "c0", "c1", "p0", "p1"]
    assert records[2].source == f"{folder}/b.csv:2"
    # a folder whose files name splits: only the asked split's files
    split_folder = tmp_path / "split"
    write_jsonl(split_folder / "data" / "train-00000-of-00001.jsonl", rows("t", 2))
    write_jsonl(split_folder / "data" / "test-00000-of-00001.jsonl", rows("e", 1))
    assert ids(load_records(split_folder, FIELD_PRESETS["default"])[0]) == ["t0", "t1"]
    assert ids(load_records(split_folder, FIELD_PRESETS["default"], split="test")[0]) == ["e0"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(TraceDataError, match=r"empty: the folder holds no data file"):
        load_records(tmp_path / "empty", FIELD_PRESETS["default"])


def test_save_to_disk_dataset_and_dataset_dict(tmp_path: Path) -> None:
    datasets.Dataset.from_list(rows("d", 3)).save_to_disk(str(tmp_path / "one"))
    records, _ = load_records(tmp_path / "one", FIELD_PRESETS["default"])
    assert ids(records) == ["d0", "d1", "d2"] and records[0].source == f"{tmp_path / 'one'}:1"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows("t", 2)), "test": datasets.Dataset.from_list(rows("e", 1))}
    ).save_to_disk(str(tmp_path / "dict"))
    assert ids(load_records(tmp_path / "dict", FIELD_PRESETS["default"], split="test")[0]) == ["e0"]
    with pytest.raises(TraceDataError, match=r"dict: the saved dataset has no split 'dev' \(splits: train, test\)"):
        load_records(tmp_path / "dict", FIELD_PRESETS["default"], split="dev")


def test_hub_repo_clone_with_subsets(tmp_path: Path) -> None:
    """A local clone of a hub dataset repo is read by ``datasets.load_dataset`` as the hub would be."""
    repo = tmp_path / "repo"
    write_jsonl(repo / "easy" / "train.jsonl", rows("e", 2))
    write_jsonl(repo / "hard" / "train.jsonl", rows("h", 3))
    (repo / "README.md").write_text(
        "---\nconfigs:\n- config_name: easy\n  data_files:\n  - split: train\n    path: easy/train.jsonl\n"
        "- config_name: hard\n  data_files:\n  - split: train\n    path: hard/train.jsonl\n---\n# traces\n"
    )
    assert ids(load_records(repo, FIELD_PRESETS["default"], subset="hard")[0]) == ["h0", "h1", "h2"]
    where = next(iter_rows(repo, "train", "easy"))[0]
    assert where == f"{repo}[easy/train]:1"
    with pytest.raises(TraceDataError, match=r"loading it as a Hugging Face dataset \(subset 'nope', split "
                                             r"'train', revision 'v2'\) failed"):
        load_records(repo, FIELD_PRESETS["default"], subset="nope", revision="v2")


def test_mixed_sources_per_source_limits_presets_and_ids(tmp_path: Path, tiny_world: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", rows("a", 6))
    sharegpt = [
        {"id": i, "conversations": [{"from": "human", "value": f"s q{i}"},
                                    {"from": "gpt", "value": f"<think>s r{i}</think>s a{i}"}]}
        for i in range(4)
    ]
    b = write_jsonl(tmp_path / "b.jsonl", sharegpt)
    dm = TeacherTraceDataModule(
        None,
        str(tiny_world / "tokenizer"),
        sources=[{"path": str(a), "limit": 3}, {"path": str(b), "preset": "sharegpt"}],
        global_batch_size=2,
        max_length=256,
    )
    dm.setup()
    got = ids(dm.problems())
    assert len(got) == 7 and [g for g in got if g.startswith("1:")] == ["1:0", "1:1", "1:2", "1:3"]
    assert len([g for g in got if g.startswith("0:a")]) == 3
    assert dm.records[-1].reasoning == "s r3" and [t.index for t in dm.traces] == list(range(7))
    # the same draw every time; data.limit then subsets the mixed set
    again = TeacherTraceDataModule(None, str(tiny_world / "tokenizer"),
                                   sources=[{"path": str(a), "limit": 3}, {"path": str(b), "preset": "sharegpt"}],
                                   max_length=256)
    assert ids(again.problems()) == got
    limited = TeacherTraceDataModule(None, str(tiny_world / "tokenizer"), sources=[str(a), str(b)], limit=5,
                                     preset="default", max_length=256, fields=None)
    with pytest.raises(TraceDataError, match=r"b\.jsonl:1: record has no prompt"):
        limited.setup()  # a plain path entry takes data.preset, here `default`, which does not read conversations
    limited = TeacherTraceDataModule(None, str(tiny_world / "tokenizer"), limit=5, max_length=256,
                                     sources=[str(a), {"path": str(b), "preset": "sharegpt"}])
    assert len(limited.problems()) == 5 and set(ids(limited.problems())) <= {*(f"0:a{i}" for i in range(6)),
                                                                          *(f"1:{i}" for i in range(4))}
    assert limited.fingerprint()["sources"][1]["preset"] == "sharegpt"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"path": "x.jsonl", "sources": ["y.jsonl"]}, "give data.path or data.sources, not both"),
        ({"path": None, "sources": [{"file": "y"}]}, r"data.sources\[0\]: unknown key\(s\) \['file'\]"),
        ({"path": None, "sources": [{"path": "y", "limit": 0}]}, r"data.sources\[0\]: limit must be a positive"),
        ({"path": None, "sources": [{"path": "y", "preset": "nope"}]}, r"data.sources\[0\]: unknown preset 'nope'"),
        ({"path": None, "sources": [{"limit": 2}]}, r"data.sources\[0\]: no path"),
        ({"path": None, "sources": None}, "data.path is not set"),
    ],
)
def test_bad_sources_are_one_line(kwargs: dict, message: str, tiny_world: Path) -> None:
    with pytest.raises(TraceDataError, match=message):
        TeacherTraceDataModule(tokenizer=str(tiny_world / "tokenizer"), **kwargs)


def test_relative_source_paths_mean_the_config_folder(tmp_path: Path) -> None:
    from jsonargparse import Namespace

    from t3s.data.from_config import anchor_data_paths

    write_jsonl(tmp_path / "cfg" / "a.jsonl", rows("a", 1))
    (tmp_path / "cfg" / "t.jinja").write_text("{{ messages }}")
    config = Namespace(data=Namespace(path=None, template=Namespace(chat_template="t.jinja"),
                                      sources=[{"path": "a.jsonl", "limit": 1}, "a.jsonl", "org/hub-id"]))
    anchor_data_paths(config, [tmp_path / "cfg" / "c.yaml"])
    absolute = str((tmp_path / "cfg" / "a.jsonl").resolve())
    assert config.data.sources == [{"path": absolute, "limit": 1}, absolute, "org/hub-id"]
    assert config.data.template.chat_template == str((tmp_path / "cfg" / "t.jinja").resolve())
