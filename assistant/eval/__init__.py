"""Offline evaluation: gold sets, metrics, baselines, the runner and the report.

    from assistant import Assistant
    from assistant.eval import load_gold, evaluate, write_report

    items = load_gold("eval/gold/starter.jsonl")
    result = evaluate(Assistant.open("indexes/starter"), items, baselines=True)
    write_report(result, "eval/reports/starter")

The command line is ``assistant eval --questions FILE ...`` (see eval/README.md).
"""

from assistant.eval.gold import GOLD_FORMATS, GoldItem, load_gold
from assistant.eval.report import write_report
from assistant.eval.runner import EvalResult, evaluate

__all__ = ["GOLD_FORMATS", "GoldItem", "load_gold", "EvalResult", "evaluate", "write_report"]
