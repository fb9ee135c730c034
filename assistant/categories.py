"""Disease categories that a question may name instead of a disease: "solid tumours",
"haematological malignancies".

No passage says that Ewing sarcoma is a solid organ malignancy: it says "Ewing sarcoma".
So a question about a category is searched with the category's members spelled out for
BM25, and a sentence counts as evidence only if it (or its document title and section)
names a member of the category and is not about the other category alone. A CAR T-cell
sentence about B-cell leukaemia is not evidence for "CAR T cells in solid tumours".
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    named_by: re.Pattern[str]  # how a question names the category
    members: re.Pattern[str]  # words that put a sentence in it
    others: re.Pattern[str]  # words that put a sentence in the other category
    search_terms: str  # spelled out for BM25


_SOLID_WORDS = (r"solid|sarcoma|osteosarcoma|neuroblastoma|glioma|glioblastoma|"
                r"medulloblastoma|ependymoma|blastoma|carcinoma|melanoma|mesothelioma|"
                r"germ cell tumou?r|wilms|retinoblastoma|(breast|lung|colon|colorectal|"
                r"prostate|pancrea\w*|ovarian|gastric|liver|brain|kidney|renal) (cancer|"
                r"tumou?r)s?")
_BLOOD_WORDS = (r"leuka?emi\w*|lymphoma\w*|myeloma|b-cell|b-all|\ball\b|\bcll\b|\baml\b|"
                r"\bcml\b|cd19|cd22|bcma|ha?ematolog\w*|myelodysplastic|lymphoblastic")

CATEGORIES = (
    Category(
        named_by=re.compile(r"\bsolid(\s+organ)?\s+(tumou?rs?|malignanc\w*|cancers?|neoplasms?)",
                            re.I),
        members=re.compile(rf"\b({_SOLID_WORDS})\b", re.I),
        others=re.compile(rf"\b({_BLOOD_WORDS})", re.I),
        search_terms="solid tumors sarcoma osteosarcoma Ewing neuroblastoma glioma"),
    Category(
        named_by=re.compile(r"\b(ha?ematolog\w*\s+(malignanc\w*|cancers?|neoplasms?)|"
                            r"blood cancers?)", re.I),
        members=re.compile(rf"\b({_BLOOD_WORDS})", re.I),
        others=re.compile(rf"\b({_SOLID_WORDS})\b", re.I),
        search_terms="leukemia lymphoma myeloma"),
)


def named_in(query: str) -> list[Category]:
    return [c for c in CATEGORIES if c.named_by.search(query)]


def fits(categories: list[Category], sentence: str, context: str) -> bool:
    """Whether a sentence is about the question's categories: it names a member (the
    sentence, or else its document title and section, ``context``), and the sentence
    itself is not about the other category without naming a member."""
    for category in categories:
        if category.members.search(sentence):
            continue
        if category.others.search(sentence) or not category.members.search(context):
            return False
    return True
