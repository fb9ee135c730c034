"""Rendering: an Answer as plain text or Markdown (JSON is Answer.model_dump_json)."""

from __future__ import annotations

from assistant.types import Answer, Reference, Section, Statement

KEY_POINTS_HEADING = "Key considerations for clinical practice"
DISCLAIMER_HEADING = "Professional medical disclaimer"


def cite(statement: Statement) -> str:
    return f"{statement.text} [{', '.join(map(str, statement.citations))}]"


def reference_line(ref: Reference) -> str:
    source = ", ".join(str(x) for x in (ref.source, ref.year) if x)
    line = f"[{ref.number}] {ref.title}"
    if source:
        line += f" — {source}."
    if ref.locator:
        line += f" {ref.locator}"
    return line


def _section_lines(section: Section, markdown: bool) -> list[str]:
    bullet = "- " if markdown else "  - "
    lines = [f"## {section.heading}" if markdown else section.heading]
    if section.notice and not section.statements:
        lines.append(section.notice)
    if section.kind == "guideline":
        if section.statements:
            lines.append(" ".join(cite(s) for s in section.statements))
    else:
        lines += [bullet + cite(s) for s in section.statements]
    if section.key_points:
        lines += ["", f"### {KEY_POINTS_HEADING}" if markdown else KEY_POINTS_HEADING]
        lines += [bullet + cite(s) for s in section.key_points]
    return lines


def _render(answer: Answer, markdown: bool) -> str:
    lines = [f"**{answer.question}**" if markdown else answer.question, ""]
    lines += _section_lines(answer.guidelines, markdown) + [""]
    lines += _section_lines(answer.research, markdown) + [""]
    lines.append("## References" if markdown else "References")
    if answer.references:
        prefix = "- " if markdown else "  "
        lines += [prefix + reference_line(r) for r in answer.references]
    else:
        lines.append("(none: no indexed passage was relevant enough to cite)")
    if answer.notes:  # e.g. the language model failed and the extractive answer is shown
        lines += [""] + [f"_Note: {note}_" if markdown else f"Note: {note}"
                         for note in answer.notes]
    lines += ["", f"## {DISCLAIMER_HEADING}" if markdown else DISCLAIMER_HEADING,
              answer.disclaimer, "", answer.follow_up_prompt]
    return "\n".join(lines) + "\n"


def render_text(answer: Answer) -> str:
    return _render(answer, markdown=False)


def render_markdown(answer: Answer) -> str:
    return _render(answer, markdown=True)
