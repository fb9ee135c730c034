"""Retrieval over the real starter index: fusion is one pure step over the candidates (what
scripts/fit_retrieval.py fits is what answers use), feedback only reorders what the
question found, and the relevance bar is a decision per kind, with the passage floor
below it."""

from __future__ import annotations

import numpy as np

from assistant.cli import SEED_QUESTION
from assistant.condense import SearchQuery
from assistant.retrieval import lexical_words
from assistant.types import KINDS

QUESTION = "How is cytokine release syndrome managed?"
OFF_TOPIC = "What is the best recipe for sourdough bread?"


def ranked(found):
    return {kind: [h.passage.id for h in found[kind]] for kind in KINDS}


def test_retrieve_is_fuse_over_candidates(starter_assistant):
    retriever = starter_assistant.retriever
    vector, found = retriever.retrieve(SEED_QUESTION, top_k=8)
    candidates = retriever.candidates(SEED_QUESTION, depth=32)
    assert (candidates.vector == vector).all()
    assert ranked(retriever.fuse(candidates, 8)) == ranked(found)
    assert found["guideline"] and found["research"]
    for kind in KINDS:  # fused order, best first, each above the passage floor
        fusion = [h.fusion for h in found[kind]]
        assert fusion == sorted(fusion, reverse=True)
        assert all(h.score >= starter_assistant.settings.min_passage_score for h in found[kind])


def test_fusion_parameters_change_the_ranking(starter_assistant):
    retriever = starter_assistant.retriever
    candidates = retriever.candidates(QUESTION, depth=32)
    settings = starter_assistant.settings
    plain = settings.with_overrides(feedback_weight=0.0)
    dense_only = retriever.fuse(candidates, 8, plain.with_overrides(dense_weight=1.0))
    lexical_only = retriever.fuse(candidates, 8, settings.with_overrides(dense_weight=0.0))
    for kind in KINDS:  # weight 1: pure cosine order; weight 0: pure BM25 order
        cosines = [h.score for h in dense_only[kind]]
        assert cosines == sorted(cosines, reverse=True)
    bm25_order = [r for r in candidates.lexical
                  if starter_assistant.index.passages[r].kind == "guideline"]
    got = [h.passage.id for h in lexical_only["guideline"]]
    want = [starter_assistant.index.passages[r].id for r in bm25_order
            if candidates.cosine[r] >= settings.min_passage_score][:8]
    assert got == want


def test_feedback_reorders_only_what_the_question_found(starter_assistant):
    retriever = starter_assistant.retriever
    candidates = retriever.candidates(QUESTION, depth=32)
    settings = starter_assistant.settings
    assert settings.feedback_weight > 0
    plain = retriever.fuse(candidates, 8, settings.with_overrides(feedback_weight=0.0))
    fed = retriever.fuse(candidates, 8)
    found = {starter_assistant.index.passages[r].id for r in candidates.cosine}
    assert {h.passage.id for hs in fed.values() for h in hs} <= found
    assert {k for k in KINDS if fed[k]} == {k for k in KINDS if plain[k]}  # bar: unchanged
    # The best first-pass passage is the feedback, so it stays first; the rest may move.
    first = [max((h for hs in f.values() for h in hs), key=lambda h: h.fusion).passage.id
             for f in (plain, fed)]
    assert first[0] == first[1]
    assert ranked(fed) != ranked(plain)
    for kind in KINDS:  # each passage keeps its own cosine with the question
        for h in fed[kind]:
            row = next(r for r in candidates.cosine
                       if starter_assistant.index.passages[r].id == h.passage.id)
            assert h.score == candidates.cosine[row]
    # A follow-up gets no feedback: its first pass is led by the earlier topic.
    follow_up = retriever.candidates(SearchQuery("toxicities — CAR T cells", focus="toxicities"),
                                     depth=32)
    assert follow_up.follow_up
    assert ranked(retriever.fuse(follow_up, 8)) == ranked(
        retriever.fuse(follow_up, 8, settings.with_overrides(feedback_weight=0.0)))


def test_relevance_bar_is_per_kind(starter_assistant):
    retriever = starter_assistant.retriever
    off = retriever.candidates(OFF_TOPIC, depth=32)
    assert max(off.cosine.values()) < starter_assistant.settings.relevance_bar
    assert not any(retriever.fuse(off, 8).values())  # nothing: the answer abstains
    on = retriever.candidates(QUESTION, depth=32)
    best = max(on.cosine[r] for r in on.cosine
               if starter_assistant.index.passages[r].kind == "guideline")
    # A bar above the guidelines' best empties that kind only where research still reaches it.
    strict = starter_assistant.settings.with_overrides(relevance_bar=best + 1e-4)
    found = retriever.fuse(on, 8, strict)
    assert found["guideline"] == []
    research_best = max(on.cosine[r] for r in on.cosine
                        if starter_assistant.index.passages[r].kind == "research")
    assert bool(found["research"]) == (research_best >= best + 1e-4)
    answer = starter_assistant.ask(OFF_TOPIC)
    assert answer.abstained and not answer.references


def test_follow_up_focus_weighs_its_own_words(starter_assistant):
    retriever = starter_assistant.retriever
    plain = retriever.query_vector(SearchQuery("toxicities — CAR T cells"))
    focused = retriever.query_vector(SearchQuery("toxicities — CAR T cells", focus="toxicities"))
    own = starter_assistant.embedder.embed(["toxicities"])[0]
    assert float(focused @ own) > float(plain @ own)


def test_reranked_reorders_only_the_read_passages(starter_assistant):
    from assistant.rerank import reranked, to_rerank

    _, hits = starter_assistant.retriever.retrieve(QUESTION, top_k=8)
    read = to_rerank(hits, 6)
    assert len(read) == 6 and all(h.fusion >= max(
        (o.fusion for hs in hits.values() for o in hs if o not in read), default=-1) for h in read)
    # The last read passage is judged the only answer; the rest of what was read is not.
    scores = {h.passage.id: 0.0 for h in read} | {read[-1].passage.id: 1.0}
    strong = reranked(hits, scores, weight=100.0)
    merged = sorted((h for hs in strong.values() for h in hs), key=lambda h: -h.fusion)
    assert merged[0].passage.id == read[-1].passage.id
    for kind in KINDS:
        assert {h.passage.id for h in strong[kind]} == {h.passage.id for h in hits[kind]}
        unread = [h.passage.id for h in hits[kind] if h.passage.id not in scores]
        if unread:  # after the read ones, in fused order
            assert [h.passage.id for h in strong[kind]][-len(unread):] == unread
    assert ranked(reranked(hits, scores, weight=0.0)) == ranked(hits)  # weight 0: fused order


def test_bm25_settings_reach_the_lexical_index(starter_assistant):
    """k1 and b (fitted with the fusion) are the BM25 the retriever scores with: with b = 0
    a passage's length no longer lowers its score, so the long passages that hold the
    question's words gain against the short ones."""
    retriever = starter_assistant.retriever
    words = lexical_words(QUESTION)
    rows = retriever.index.rows["research"]
    length = np.array([len(lexical_words(retriever.passage_text(retriever.index.passages[r])))
                       for r in rows])
    default = retriever.lexical["research"].scores(words)
    no_length = retriever.lexical_indexes(
        starter_assistant.settings.with_overrides(bm25_b=0.0), keep=False
    )["research"].scores(words)
    found = default > 0
    assert found.sum() >= 4
    middle = np.median(length[found])
    gain = no_length / np.where(found, default, 1)
    assert gain[found & (length > middle)].mean() > gain[found & (length < middle)].mean()


def test_bm25_is_saved_with_the_build_and_loaded_at_the_next_open(starter_assistant,
                                                                  tmp_path):
    """The first open saves each kind's BM25 in the build folder (per k1 and b); the next
    open loads it, memory-mapped, and scores exactly as the index it built. A folder it
    cannot write to only means building BM25 at each open."""
    import os
    import shutil

    from assistant.retrieval import LexicalIndex

    retriever = starter_assistant.retriever
    settings = starter_assistant.settings
    for kind in KINDS:
        assert list(retriever.index.build.glob(
            f"bm25-{kind}-k1={settings.bm25_k1}-b={settings.bm25_b}-*"))
    words = lexical_words(QUESTION)
    for kind in KINDS:
        texts = [retriever.passage_text(retriever.index.passages[r])
                 for r in retriever.index.rows[kind]]
        built = LexicalIndex(texts, 0.5, 0.4)
        folder = tmp_path / f"bm25-{kind}"
        first = LexicalIndex.cached(folder, lambda: texts, 0.5, 0.4)  # builds and saves
        assert folder.is_dir()
        loaded = LexicalIndex.cached(folder, lambda: [], 0.5, 0.4)  # reads, never builds
        assert loaded.size == built.size == first.size
        assert loaded.document_frequency == built.document_frequency
        assert np.allclose(loaded.scores(words), built.scores(words))

    read_only = tmp_path / "read-only"
    read_only.mkdir()
    os.chmod(read_only, 0o555)
    try:
        texts = [retriever.passage_text(p) for p in retriever.index.passages[:20]]
        index = LexicalIndex.cached(read_only / "bm25-x", lambda: texts, 0.5, 0.4)
        assert index.size == 20 and not (read_only / "bm25-x").exists() or os.geteuid() == 0
    finally:
        os.chmod(read_only, 0o755)
        shutil.rmtree(read_only)
