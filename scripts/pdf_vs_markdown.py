"""The real-document evaluation over PDFs: the same NCI PDQ summaries ingested from their
Markdown and from PDFs printed by headless Chromium (scripts/render_pdq.py), each gold
set turn asked of both, the retrieval and answer metrics side by side.

    python scripts/pdf_vs_markdown.py --work /tmp/pdq-pdf            # the gold set's 51 summaries
    python scripts/pdf_vs_markdown.py --work /tmp/pdq-sub \
        --summaries eval/pdf_vs_markdown_summaries.txt              # 25 of them (what was run)
    python scripts/pdf_vs_markdown.py --work /tmp/pdq-pdf --all      # all 242 (hours on 2 cores)

With ``--summaries``, the turns asked are those whose gold summaries are all in the list,
and every out-of-scope turn. Steps (each skipped when its output is there): link the
summaries into WORK/md, render them into WORK/out/{html,pdf}, ingest WORK/md into
WORK/idx-md and WORK/out/pdf into WORK/idx-pdf, `assistant eval` both into
WORK/eval-{md,pdf}, then print the table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant import Settings  # noqa: E402
from assistant.cli import main as cli  # noqa: E402
from assistant.index import Index, ingest  # noqa: E402
from scripts.render_pdq import render  # noqa: E402

PDQ = ROOT.parent / "shared" / "data" / "nci_pdq_hp" / "md"
GOLD = ROOT / "eval" / "gold" / "pdq.jsonl"
METRICS = [("recall@5", "assistant"), ("recall@10", "assistant"), ("ndcg@10", "assistant"),
           ("mrr@10", "assistant"), ("must_mention", "assistant"),
           ("must_mention_follow_up", "assistant"), ("rougeL_f1", "assistant"),
           ("rouge2_f1", "assistant"), ("token_f1", "assistant"), ("gold_cited", "assistant"),
           ("abstention_out_of_scope", "assistant"), ("abstention_in_scope", "assistant"),
           ("well_formed", "assistant"), ("citation_validity", "assistant")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--all", action="store_true", help="all 242 summaries, not only "
                        "those the gold set names")
    parser.add_argument("--summaries", type=Path, help="a file of summary names (file "
                        "stems), one a line: only these, and the turns they answer")
    args = parser.parse_args()
    work = args.work
    (work / "md").mkdir(parents=True, exist_ok=True)
    turns = [json.loads(line) for line in GOLD.read_text().splitlines() if line.strip()]
    if args.all:
        stems = sorted(p.stem for p in PDQ.glob("*.md"))
    elif args.summaries:
        stems = sorted(args.summaries.read_text().split())
    else:
        stems = sorted({d for turn in turns for d in turn["gold_doc_ids"]})
    gold = work / "gold.jsonl"
    gold.write_text("".join(json.dumps(t) + "\n" for t in turns
                            if t["expect_abstain"] or set(t["gold_doc_ids"]) <= set(stems)))
    for stem in stems:
        link = work / "md" / f"{stem}.md"
        if not link.exists():
            link.symlink_to(PDQ / f"{stem}.md")
    if not (work / "out" / "pdf" / "documents.yaml").is_file():
        render(sorted((work / "md").glob("*.md")), work / "out")
    for name, source in (("md", work / "md"), ("pdf", work / "out" / "pdf")):
        if Index.current_build(work / f"idx-{name}") is None:
            print(ingest([source], Settings(index_path=work / f"idx-{name}")).summary())
        if not (work / f"eval-{name}" / "report.json").is_file():
            cli(["eval", "--questions", str(gold), "--index", str(work / f"idx-{name}"),
                 "--out", str(work / f"eval-{name}"), "--quiet"])
    reports = {name: json.loads((work / f"eval-{name}" / "report.json").read_text())
               for name in ("md", "pdf")}
    counts = {name: Index.open(work / f"idx-{name}").manifest["counts"] for name in reports}
    print(f"{len(stems)} summaries, {reports['md']['summary']['assistant']['questions']} "
          f"turns; passages: Markdown {counts['md']['passages']}, PDF {counts['pdf']['passages']}")
    print("| metric | Markdown | PDF | PDF − Markdown |\n|---|---|---|---|")
    worst = 0.0
    for key, method in METRICS:
        md, pdf = (reports[n]["summary"][method].get(key, math.nan) for n in ("md", "pdf"))
        print(f"| {key} | {md:.3f} | {pdf:.3f} | {pdf - md:+.3f} |")
        if not (math.isnan(md) or math.isnan(pdf)):
            worst = max(worst, abs(pdf - md))
    print(f"largest difference: {worst:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
