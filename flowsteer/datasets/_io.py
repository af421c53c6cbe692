"""Reading benchmark files: JSON / JSONL (optionally gzipped), directories, the Hugging Face hub.

Every error names the file, the line (JSONL) or record index (JSON arrays) and the missing field.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from flowsteer.errors import UserError

__all__ = ["Record", "PathLike", "is_hub", "open_text", "read_jsonl", "read_json", "read_records",
           "resolve_file", "hub_rows", "field"]

PathLike = str | os.PathLike[str]


class Record(dict):
    """A raw record plus where it came from (``file:line`` or ``file: record i``), for error messages."""

    where: str = ""

    @classmethod
    def at(cls, data: Mapping[str, Any], where: str) -> Record:
        record = cls(data)
        record.where = where
        return record


def is_hub(path: PathLike | None) -> bool:
    """True for ``"hf:<repo>"`` paths (load from the Hugging Face hub)."""
    return isinstance(path, str) and path.startswith("hf:")


def open_text(path: Path) -> IO[str]:
    """Open a text file, transparently gunzipping ``*.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def read_jsonl(path: Path) -> Iterator[Record]:
    """One record per non-blank line; a bad line raises UserError naming ``file:line``."""
    with open_text(path) as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(
                    f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); each line of a JSONL "
                    "file must hold one JSON object"
                ) from None
            if not isinstance(data, dict):
                raise UserError(f"{where}: expected a JSON object per line, got {type(data).__name__}")
            yield Record.at(data, where)


def read_json(path: Path) -> Any:
    """The parsed content of a JSON file (``.json`` or ``.json.gz``)."""
    try:
        with open_text(path) as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the file ({exc})") from None


def read_records(path: Path) -> list[Record]:
    """Records of a JSONL file, or of a JSON file holding an array of objects."""
    name = path.name.removesuffix(".gz")
    if name.endswith(".jsonl"):
        return list(read_jsonl(path))
    data = read_json(path)
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON array of records (or a .jsonl file), got {type(data).__name__}")
    out = []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise UserError(f"{path}: record {index} is a {type(item).__name__}, expected a JSON object")
        out.append(Record.at(item, f"{path}: record {index}"))
    return out


def resolve_file(path: PathLike | None, dataset: str, candidates: Sequence[str]) -> Path:
    """The file to read: ``path`` itself, or the first of ``candidates`` inside directory ``path``."""
    if path is None:
        raise UserError(
            f"dataset {dataset!r} is not bundled with FlowSteer: give a local copy (`--data PATH` on the "
            f"command line, path= in Python; expected file names: {', '.join(candidates)}) or "
            f"'hf:<repo>' to load it from the hub"
        )
    target = Path(path).expanduser()
    if target.is_dir():
        for candidate in candidates:
            if (target / candidate).is_file():
                return target / candidate
        present = ", ".join(sorted(p.name for p in target.iterdir())[:20]) or "nothing"
        raise UserError(
            f"{target}: no {dataset} file found (looked for {', '.join(candidates)}; the folder holds "
            f"{present}); pass the file itself as path="
        )
    if not target.is_file():
        raise UserError(f"{target}: no such file for dataset {dataset!r}; check the path")
    return target


def hub_rows(path: str, *, split: str | None, default_split: str, config: str | None = None) -> list[Record]:
    """Rows of a hub dataset (``"hf:<repo>"`` or ``"hf:<repo>:<config>"``) through the ``datasets``
    package; offline or missing, a clear error says to pass a local file instead."""
    spec = path.removeprefix("hf:")
    repo, _, name = spec.partition(":")
    try:
        import datasets as hf_datasets
    except ImportError:
        raise UserError(
            f"loading {path!r} from the Hugging Face hub needs the 'datasets' package: pip install datasets"
        ) from None
    try:
        rows = hf_datasets.load_dataset(repo, name or config, split=split or default_split)
    except Exception as exc:  # network, auth, missing repo: all mean "use a local file"
        raise UserError(
            f"could not load {path!r} (split {split or default_split!r}) from the Hugging Face hub: "
            f"{type(exc).__name__}: {str(exc)[:300]}. If you are offline (HF_HUB_OFFLINE=1), download the "
            "file and pass its local path instead"
        ) from None
    return [Record.at(dict(row), f"{path}[{index}]") for index, row in enumerate(rows)]


def field(record: Mapping[str, Any], *names: str, where: str = "", dataset: str = "") -> Any:
    """The first present field of ``names``; missing -> UserError naming the file/line and the field."""
    for name in names:
        if name in record and record[name] is not None:
            return record[name]
    location = where or getattr(record, "where", "") or "record"
    wanted = " or ".join(repr(n) for n in names)
    keys = ", ".join(sorted(map(str, record))) or "none"
    hint = f"; is this a {dataset} file?" if dataset else ""
    raise UserError(f"{location}: missing field {wanted} (the record has: {keys}){hint}")
