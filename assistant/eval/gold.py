"""Gold sets: questions with gold answers and gold documents, from four formats.

The project's own JSONL (``eval/gold/*.jsonl``), one question per line::

    {"id": "q01", "question": "...", "history": ["earlier question", ...],
     "gold_answer": "...", "gold_doc_ids": ["gl-crs-management", ...],
     "expect_abstain": false, "type": "single"}

``history`` holds the earlier questions of the conversation, oldest first; the runner
asks them in turn and asks ``question`` as the follow-up. ``gold_answer`` may also be a
list of acceptable answers. ``gold_doc_ids`` are document ids of the index (front-matter
``id``) or document URLs. ``expect_abstain`` marks questions whose right answer is
"the indexed evidence does not address this". ``type`` groups questions in the report.

Public formats (read in place from ../shared/data, never copied):
- ``pubmedqa``: ``ori_pqal.json``; gold = the item's own PMID and its LONG_ANSWER;
  type = the yes/no/maybe decision.
- ``bioasq``: Task B golden JSON (a file, or a folder searched for ``*_golden.json``);
  gold = the ``documents`` PMIDs and the ``ideal_answer`` variants; type = factoid /
  yesno / summary / list.
- ``medquad``: ``medquad_answered.jsonl(.gz)``; gold answer = the answer text; gold
  document = for the CancerGov subset, the URL of the matching PDQ health-professional
  summary (``/patient/`` replaced by ``/hp/``), else none (retrieval is not scored);
  type = the question type (treatment, symptoms, ...).
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

from pydantic import BaseModel, field_validator

GOLD_FORMATS = ("auto", "jsonl", "pubmedqa", "bioasq", "medquad")
_PMID = re.compile(r"(\d+)\s*$")


class GoldItem(BaseModel):
    id: str
    question: str
    history: list[str] = []
    gold_answer: str | list[str] = ""
    gold_doc_ids: list[str] = []
    expect_abstain: bool = False
    type: str = ""
    source: str = ""
    # Key terms a correct answer body contains (own gold sets); "a|b" accepts either.
    must_mention: list[str] = []
    # BioASQ factoid and list questions: the exact answer, as items each with synonyms.
    exact_answer: list[list[str]] = []
    # A plain rewrite of a vignette names the vignette's id (both forms are reported).
    rewrite_of: str = ""

    @field_validator("question")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("question is empty")
        return value

    @property
    def gold_answers(self) -> list[str]:
        answers = [self.gold_answer] if isinstance(self.gold_answer, str) else self.gold_answer
        return [a for a in answers if a and a.strip()]


def load_gold(path: str | Path, fmt: str = "auto", limit: int | None = None) -> list[GoldItem]:
    """The questions of a gold set file (or BioASQ folder), at most ``limit`` of them."""
    path = Path(path)
    if fmt not in GOLD_FORMATS:
        raise ValueError(f"unknown gold format {fmt!r}; choose one of {', '.join(GOLD_FORMATS)}")
    if not path.exists():
        raise ValueError(f"no such gold set: {path}")
    if fmt == "auto":
        fmt = detect_format(path)
    loader = {"jsonl": _load_jsonl, "pubmedqa": _load_pubmedqa, "bioasq": _load_bioasq,
              "medquad": _load_medquad}[fmt]
    items = loader(path)
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ValueError(f"{path}: question id {item.id!r} is used twice")
        seen.add(item.id)
    return items[:limit] if limit else items


# BioASQ Task B years that fitting and training may read; 11B is held out for evaluation.
FIT_YEARS = ("Task7B", "Task8B", "Task9B", "Task10B")
HELD_OUT_YEAR = "Task11B"


def fit_folders(data: Path) -> list[Path]:
    """The BioASQ golden-set folders of FIT_YEARS under ``data`` (../shared/data)."""
    root = data / "bioasq_taskb_golden_mirage"
    return [f for year in FIT_YEARS for f in sorted(root.glob(year + "Golden*"))]


def fitting_sets(data: Path) -> tuple[dict[str, list[GoldItem]], int]:
    """The gold sets anything may be fitted or trained on (``data`` is ../shared/data):
    BioASQ 7B-10B, less any question whose text is also an 11B question, and PubMedQA;
    and how many BioASQ questions were left out for matching 11B."""
    def normalise(question: str) -> str:
        return " ".join(re.findall(r"\w+", question.lower()))

    root = data / "bioasq_taskb_golden_mirage"
    held_out = {normalise(i.question) for folder in sorted(root.glob(HELD_OUT_YEAR + "*"))
                for i in _load_bioasq(folder)}
    bioasq: dict[str, GoldItem] = {}
    for folder in fit_folders(data):
        for item in _load_bioasq(folder):
            bioasq.setdefault(item.id, item)
    kept = [i for i in bioasq.values() if normalise(i.question) not in held_out]
    return ({"bioasq_7b_10b": kept,
             "pubmedqa": _load_pubmedqa(data / "pubmedqa" / "ori_pqal.json")},
            len(bioasq) - len(kept))


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "bioasq"
    name = path.name.lower()
    if name.endswith(".gz") or "medquad" in name:
        return "medquad"
    if name.endswith(".jsonl"):
        return "jsonl"
    if name.endswith(".json"):
        with path.open(encoding="utf-8") as f:
            head = f.read(4096)
        if '"questions"' in head:
            return "bioasq"
        if '"QUESTION"' in head:
            return "pubmedqa"
    raise ValueError(f"cannot tell the format of {path}; pass --format "
                     f"({', '.join(GOLD_FORMATS[1:])})")


def _load_jsonl(path: Path) -> list[GoldItem]:
    items = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = GoldItem.model_validate_json(line)
            except ValueError as exc:
                raise ValueError(f"{path}, line {number}: {exc}") from None
            item.source = item.source or path.stem
            items.append(item)
    return items


def _load_pubmedqa(path: Path) -> list[GoldItem]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        GoldItem(id=f"pubmedqa:{pmid}", question=item["QUESTION"],
                 gold_answer=item["LONG_ANSWER"], gold_doc_ids=[f"pmid:{pmid}"],
                 type=item.get("final_decision", ""), source="pubmedqa")
        for pmid, item in data.items()
    ]


def _load_bioasq(path: Path) -> list[GoldItem]:
    files = sorted(path.rglob("*_golden.json")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"no BioASQ *_golden.json files under {path}")
    items: dict[str, GoldItem] = {}
    for file in files:
        for q in json.loads(file.read_text(encoding="utf-8"))["questions"]:
            pmids = [m.group(1) for d in q.get("documents", []) if (m := _PMID.search(d))]
            ideal = q.get("ideal_answer") or []
            items.setdefault(q["id"], GoldItem(
                id=f"bioasq:{q['id']}", question=q["body"],
                gold_answer=[ideal] if isinstance(ideal, str) else list(ideal),
                gold_doc_ids=list(dict.fromkeys(f"pmid:{p}" for p in pmids)),
                type=q.get("type", ""), source=file.stem,
                exact_answer=_exact_items(q) if q.get("type") in ("factoid", "list") else []))
    return list(items.values())


def _load_medquad(path: Path) -> list[GoldItem]:
    opener = gzip.open if path.name.endswith(".gz") else open
    items = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            gold_docs = []
            if r.get("source") == "CancerGov" and "/patient/" in (r.get("url") or ""):
                gold_docs = [r["url"].replace("/patient/", "/hp/")]
            items.append(GoldItem(
                id=f"medquad:{r['file']}#{r['pid']}", question=r["question"], gold_answer=r["answer"],
                gold_doc_ids=gold_docs, type=r.get("qtype", ""), source=r.get("subset", "")))
    return items


def _exact_items(question: dict) -> list[list[str]]:
    """A BioASQ factoid or list exact answer as items, each a list of synonyms (the
    golden files nest them one level or two deep, or give a bare string)."""
    exact = question.get("exact_answer") or []
    if isinstance(exact, str):
        exact = [exact]
    items = [[s for s in (item if isinstance(item, list) else [item])
              if isinstance(s, str) and s.strip()] for item in exact]
    items = [i for i in items if i]
    if question.get("type") == "factoid":  # every listed form is one answer's synonym
        items = [[s for i in items for s in i]] if items else []
    return items
