"""Answer-bearing sentence scoring: how likely a candidate sentence is to answer the question.

A logistic regression over a few features of the sentence, its passage and the question,
in the manner of the BioASQ query-focused extractive summarisers (a sentence classifier
fitted on earlier years). It is fitted by ``scripts/fit_sentence_scorer.py`` on BioASQ
7B-9B (labels: how much of the sentence the expert's ideal answer says, and whether it
holds the exact answer), never on 11B; its small parameters are committed in
``sentence_scorer.json`` so the default install uses them.

Resemblance to the question is one feature among others: where the sentence sits in its
passage and its abstract section (results and conclusions over background and methods),
whether it reports a finding (numbers, "significantly", "associated with") or describes a
design ("we aimed", "were enrolled") or a publication ("X and colleagues reported").
The kind of document is not a feature: BioASQ questions are answered by research
abstracts, and a scorer that learnt "guideline" from them would silence the guidelines.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PARAMETERS = Path(__file__).with_name("sentence_scorer.json")

# Words of a sentence that reports a finding; _RESULT adds the looser cues of a result or a
# definition, for the scorer's feature.
_FINDING_WORDS = (
    r"significant\w*|improv\w*|reduc\w*|increas\w*|decreas\w*|associated with|resulted in|"
    r"led to|showed|demonstrat\w*|found|achieved|no difference|superior|inferior")
_FINDING = re.compile(
    rf"\b({_FINDING_WORDS}|higher|lower|better|worse|prolong\w*|respon\w*)\b", re.I)
_RESULT = re.compile(
    rf"\b({_FINDING_WORDS}|shown|response rates?|survival|hazard ratio|odds ratio|risk|"
    r"efficac\w*|effective|benefit\w*|conclusion\w*|suggest\w*|indicat\w*|caus\w*|is used|"
    r"are used|is (a|an|the)|are (a|an|the)|consists? of|includ\w*|recommended|standard)\b", re.I)
_DESIGN = re.compile(
    r"\b(we (aimed|sought|investigated|examined|evaluated|assessed|conducted|performed|"
    r"analy[sz]ed|studied|hypothesi[sz]ed|reviewed|retrospectively|prospectively)|"
    r"(the )?(aim|objective|purpose|goal)s? (of|was|were)|this study|the present study|"
    r"were (enrolled|randomi[sz]ed|recruited|included|assigned)|was (performed|conducted|"
    r"designed)|retrospective(ly)?|cross-sectional|methods?|questionnaire|"
    r"to (evaluate|assess|determine|investigate|examine|compare))\b", re.I)
_BACKGROUND = re.compile(
    r"\b(remains? (unclear|unknown|controversial)|little is known|is not (well )?known|"
    r"has not been|have not been|few studies|is (poorly )?understood)\b", re.I)
_BIBLIOGRAPHIC = re.compile(
    r"\b(and colleagues|et al\b|reported (on|a|the)|published|described (a|the)|"
    r"(a|one|another) (study|trial|report|review) (of|in|by))|"
    r"\b(has|have) been (reported|published|described|conducted|performed)\s*\.$", re.I)
# A question about the studies themselves may quote how they were done.
_ASKS_ABOUT_STUDIES = re.compile(
    r"\b(design\w*|trials?|stud(y|ies)|methods?|enrol\w*|randomi[sz]\w*|who (reported|"
    r"published)|references?|authors?)\b", re.I)
# What a question asks for, and what a sentence that gives it states. A question that asks
# for a quantity ("Adjuvant RT dose?", "how common was severe CRS?") is answered by a
# sentence that states one, not by one about the same treatment; one that asks for a
# treatment ("1L tx for HCL?", "options for recurrent thymic carcinoma?") by a sentence that
# names one, not by one on the disease's incidence or features.
_ASKS_DOSE = re.compile(r"(?<![\w-])(?<!high )(?<!low )(doses?|dosing|dosage)\b(?!-)", re.I)
_ASKS_RATE = re.compile(
    r"\b(how (common|often|likely|many|frequent\w*)|rates?|incidence|frequency|prevalence|"
    r"proportion|percentage)\b", re.I)
# Toxicity is asked about in words a treatment question shares ("side effects of CAR T-cell
# therapy"); it has no rule of its own but is not read as a treatment question.
_ASKS_HARM = re.compile(r"\b(toxicit\w*|side[- ]effects?|adverse|complications?|safety|"
                        r"safe|harms?|risks?)\b", re.I)
_ASKS_TREATMENT = re.compile(
    r"\b(tx|treat\w*|therap\w*|manag\w*|options?|regimens?|(first|second|third)[- ]line|"
    r"[123]L|systemic|drugs? of choice|standard of care|what to (give|use|start)|"
    r"next step)\b", re.I)
_DOSE = re.compile(r"\d\s*(Gy|cGy|mg|g|µg|mcg|IU|units?|mL)\b")
_RATE = re.compile(r"\d\s*%|\b\d+(\.\d+)? (of|in|out of) \d|\b(hazard|odds) ratio\b|"
                   r"\b(HR|OR|RR)\b|\brelative risk\b|\bone in\b|\bper \d")
# A sentence that names a treatment: the words of treating, and drug names by the endings
# of the WHO's International Nonproprietary Name stems (-mab, -nib, -platin, -rubicin, ...).
_DRUG_STEMS = (
    r"mab|nib|lib|platin|taxel|rubicin|mycin|fosfamide|mustine|abine|ribine|trexed|trexate|"
    r"tecan|poside|limus|ciclib|parib|zomib|degib|lisib|statin|pril|sartan|olol|dipine|azole|"
    r"floxacin|cillin|cycline|vir|setron|pitant|oxetine|axine|opram|triptyline|pentin|"
    r"gabalin|onidine|dronate|relin|relix|lutamide|strozole|ifen|ifene|parin|cept|leukin|"
    r"poetin|grastim|mod|glutide|sone|olone|nide|mide|kinra|fentanil|morphone|codone|taxane")
_TREATMENT = re.compile(
    rf"\b(\w{{3,}}({_DRUG_STEMS})|treat\w*|therap\w*|regimens?|chemo\w*|radiation|"
    r"radiotherap\w*|irradiat\w*|surg\w*|resect\w*|\w+ectomy|excision|transplant\w*|"
    r"inhibitors?|agents?|drugs?|dos(e|es|ing)|administ\w*|given|receiv\w*|infusions?|"
    r"vaccin\w*|interferon|steroids?|corticosteroids?|cream|laser|cryo\w*|ablation|"
    r"observation|surveillance|watchful|watch and wait|manag\w*|options?|(first|second)-line|"
    r"consolidation|maintenance|adjuvant|neoadjuvant|induction|salvage|interventions?|"
    r"prescri\w*|supplement\w*|placebo|efficac\w*|remission|respon\w*)\b", re.I)


# Where a document discusses treatment, by its section headings ("Treatment Options for
# Recurrent Thymoma > Sunitinib", "Other Pharmacological Interventions").
_TREATMENT_SECTION = re.compile(r"\b(treat\w*|therap\w*|manag\w*|interventions?|options?|"
                                r"regimens?|drugs?|agents?|inhibitors?|surgery)\b", re.I)
ANSWERED_BY = {"dose": _DOSE, "rate": _RATE, "treatment": _TREATMENT}


def asked_for(question: str, topic: str = "") -> str | None:
    """What the question asks for: "dose", "rate", "treatment" or None (no rule; a sentence
    that answers it states what ANSWERED_BY names). Read from the question as typed, then,
    if it asks for none of them, from the conversation's topic ("what if she is pregnant?"
    after "second line?")."""
    if _ASKS_DOSE.search(question):
        return "dose"
    if _ASKS_RATE.search(question):
        return "rate"
    if _ASKS_HARM.search(question):
        return None
    if _ASKS_TREATMENT.search(question):
        return "treatment"
    return asked_for(topic) if topic else None


def answers(asked: str | None, sentence: str) -> bool:
    """Whether a sentence states what the question asks for (always, with no rule)."""
    return asked is None or bool(ANSWERED_BY[asked].search(sentence))


def treatment_section(section: str) -> bool:
    return bool(_TREATMENT_SECTION.search(section))


_RESULT_SECTION = re.compile(r"\b(results?|findings|conclusions?|outcomes?|summary)\b", re.I)
_METHOD_SECTION = re.compile(
    r"\b(methods?|background|objectives?|introduction|purpose|aims?|design|setting|"
    r"participants|patients and methods|materials)\b", re.I)
_ADVICE = re.compile(
    r"\b(should|recommend\w*|consider\w*|monitor\w*|must|is indicated|are indicated|"
    r"standard of care|first-line|approved|contraindicated|caution|assess\w*)\b", re.I)
_DANGLING = re.compile(r"^(this|these|that|those|it|they|such|however|in addition|also)\b", re.I)
_NUMBER = re.compile(r"\d")

FEATURES = (
    "cosine", "cosine_gap", "passage_cosine", "passage_rank", "lexical", "lexical_context",
    "first_sentence",
    "position", "result_cue", "design_cue", "background_cue", "bibliographic", "number",
    "log_words", "dangling", "result_section", "method_section", "advice",
)


@dataclass
class SentenceContext:
    """What the features read besides the sentence: its passage and where it sits."""

    cosine: float  # sentence vs query
    best_cosine: float  # the best candidate sentence's cosine for this question
    passage_cosine: float
    passage_rank: int  # rank of its passage within its kind, 0 = best
    lexical: float  # share of the query's (rarity-weighted) words it contains
    lexical_context: float  # the same, in the sentence with its document title and section
    position: int  # sentence index within the passage
    sentences: int  # sentences in the passage
    section: str


def features(sentence: str, c: SentenceContext) -> list[float]:
    return [
        c.cosine, c.cosine - c.best_cosine, c.passage_cosine, 1 / (1 + c.passage_rank),
        c.lexical, c.lexical_context, float(c.position == 0), c.position / max(1, c.sentences - 1),
        float(bool(_RESULT.search(sentence))), float(bool(_DESIGN.search(sentence))),
        float(bool(_BACKGROUND.search(sentence))), float(bool(_BIBLIOGRAPHIC.search(sentence))),
        float(bool(_NUMBER.search(sentence))), math.log(len(sentence.split()) + 1),
        float(bool(_DANGLING.match(sentence))), float(bool(_RESULT_SECTION.search(c.section))),
        float(bool(_METHOD_SECTION.search(c.section))), float(bool(_ADVICE.search(sentence))),
    ]


def asks_about_studies(question: str) -> bool:
    return bool(_ASKS_ABOUT_STUDIES.search(question))


def about_the_study_only(sentence: str, question: str | None = None) -> bool:
    """A sentence that says how a study was done or that it was published, and nothing it
    found ("A retrospective analysis of 186 patients has been reported."), for a question
    that does not ask about the studies: it is not an answer, whatever its score. Without
    ``question`` the caller has checked ``asks_about_studies`` itself."""
    if question is not None and asks_about_studies(question):
        return False
    design_only = (bool(_DESIGN.search(sentence)) and not _FINDING.search(sentence)
                   and not _NUMBER.search(sentence))
    return design_only or bool(_BIBLIOGRAPHIC.search(sentence) and not _FINDING.search(sentence))


def advice(sentence: str) -> bool:
    """Phrased as advice: a "key consideration for clinical practice"."""
    return bool(_ADVICE.search(sentence))


class SentenceScorer:
    """Probability that a sentence answers the question, from the fitted parameters."""

    def __init__(self, parameters: dict):
        if list(parameters["features"]) != list(FEATURES):
            raise ValueError(f"{PARAMETERS.name} was fitted on other features; refit it "
                             "with scripts/fit_sentence_scorer.py")
        self.mean = np.array(parameters["mean"])
        self.scale = np.array(parameters["scale"])
        self.weights = np.array(parameters["weights"])
        self.bias = float(parameters["bias"])
        self.parameters = parameters

    @classmethod
    def load(cls, path: Path = PARAMETERS) -> "SentenceScorer":
        return cls(json.loads(path.read_text()))

    def score(self, rows: np.ndarray) -> np.ndarray:
        if not len(rows):
            return np.zeros(0)
        z = ((rows - self.mean) / self.scale) @ self.weights + self.bias
        return 1 / (1 + np.exp(-z))


def fit_logistic(rows: np.ndarray, targets: np.ndarray, l2: float = 1.0,
                 steps: int = 3000, rate: float = 0.5) -> dict:
    """Logistic regression with soft targets in [0, 1] (cross-entropy), standardised
    features and an L2 penalty, by full-batch gradient descent: small and dependency-free."""
    mean, scale = rows.mean(0), rows.std(0) + 1e-6
    x = (rows - mean) / scale
    w, b = np.zeros(x.shape[1]), 0.0
    n = len(x)
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        grad = p - targets
        w -= rate * (x.T @ grad / n + l2 * w / n)
        b -= rate * float(grad.mean())
    return {"features": list(FEATURES), "mean": mean.tolist(), "scale": scale.tolist(),
            "weights": w.tolist(), "bias": b}
