"""Workflow search (the warm start's first stage) and the call cache it relies on."""

from __future__ import annotations

import asyncio

from flowsteer.datasets import load_dataset
from flowsteer.evaluation.cache import CachedChatModel, CallStore, item_scope
from flowsteer.evaluation.search import SearchResult, search_workflows
from flowsteer.testing import SimulatedExecutor
from flowsteer.testing.fakes import ScriptedChatModel

RICH = "[Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format"
CHECKED = "Programmer -> Verify ? Revise : done -> Verify ? Revise : done -> Format"
BARE = "Programmer -> Format"


def _tasks():
    return load_dataset("arithmetic", None, limit=6, split="train") + load_dataset("number_lists", None, limit=6,
                                                                                   split="train")


def test_search_scores_every_candidate_per_family_and_never_picks_one_that_cannot_release(tmp_path):
    tasks = _tasks()
    executor = SimulatedExecutor({t.question: t.golds[0] for t in tasks}, skill=0.95, seed=1)
    result = search_workflows(tasks, executor, [BARE, CHECKED, RICH], concurrency=4)
    assert result.families == ["arithmetic", "number_lists"]
    for family in result.families:
        table = result.table(family)
        assert {s.dsl for s in table} == {BARE, CHECKED, RICH} and all(s.n == 6 for s in table)
        bare = next(s for s in table if s.dsl == BARE)
        assert bare.diversity < 1 and result.best(family).dsl != BARE  # accurate, but earns no answer term
        assert all(s.calls > 0 for s in table)
    result.save(tmp_path / "search.json")
    again = SearchResult.load(tmp_path / "search.json")
    assert again.best("arithmetic").dsl == result.best("arithmetic").dsl
    assert "| arithmetic |" in again.markdown()


def test_search_shares_common_nodes_through_the_cache(tmp_path):
    tasks = _tasks()[:3]
    inner = SimulatedExecutor({t.question: t.golds[0] for t in tasks}, skill=0.9)
    cached = CachedChatModel(inner, CallStore(tmp_path / "calls.sqlite"))
    search_workflows(tasks, cached, [CHECKED, BARE], concurrency=8)
    # both candidates open with the same Programmer call on each task: paid once per task
    assert cached.hits >= len(tasks), (cached.hits, cached.misses)


def test_concurrent_identical_requests_are_answered_once(tmp_path):
    inner = ScriptedChatModel(["one", "two", "three"], latency=0.05)
    cached = CachedChatModel(inner, CallStore(tmp_path / "calls.sqlite"))

    async def ask():
        with item_scope():
            return (await cached.ainvoke("same question")).content

    async def main():
        return await asyncio.gather(ask(), ask(), ask())

    assert asyncio.run(main()) == ["one", "one", "one"]
    assert cached.misses == 1 and len(inner.calls) == 1


def _scores(rows):
    from flowsteer.evaluation.search import CandidateScore

    return SearchResult(tuple(CandidateScore(f, dsl, 6, r, r, div, calls) for f, dsl, r, calls, div in rows))


ENSEMBLE = "[Programmer, Programmer] -> ScEnsemble -> Verify ? Revise : done -> Format"
VERIFY_LOOP = "Programmer -> Verify ? Revise : done -> Verify ? Revise : done -> Format"
TEST_LOOP = "Programmer -> Test ? Revise : done -> Test ? Revise : done -> Format"


def test_choose_teaches_tied_families_one_skeleton_and_never_trades_reward():
    from flowsteer.evaluation.search import skeleton

    assert skeleton(VERIFY_LOOP) == skeleton(TEST_LOOP) == "Programmer -> CHECK ? Revise : done -> CHECK ? Revise : done -> Format"
    assert skeleton(ENSEMBLE) != skeleton(VERIFY_LOOP)
    tied = _scores([("arithmetic", ENSEMBLE, 0.5, 6.0, 1.0), ("arithmetic", VERIFY_LOOP, 0.5, 6.5, 1.0),
                    ("code", TEST_LOOP, 1.0, 2.0, 1.0),
                    ("code", "Programmer -> Test ? Programmer : done -> Format", 1.0, 2.0, 0.0)])
    # the per-family best breaks the tie by calls; the shared skeleton wins the tie instead
    assert tied.best("arithmetic").dsl == ENSEMBLE
    assert {f: s.dsl for f, s in tied.choose().items()} == {"arithmetic": VERIFY_LOOP, "code": TEST_LOOP}
    assert tied.choose(shared_structure=False)["arithmetic"].dsl == ENSEMBLE
    # a better-scoring workflow is never given up for a shared one, unless within the tolerance
    better = _scores([("arithmetic", ENSEMBLE, 0.6, 6.0, 1.0), ("arithmetic", VERIFY_LOOP, 0.5, 6.5, 1.0),
                      ("code", TEST_LOOP, 1.0, 2.0, 1.0)])
    assert better.choose()["arithmetic"].dsl == ENSEMBLE
    assert better.choose(tolerance=0.15)["arithmetic"].dsl == VERIFY_LOOP
    # a candidate that cannot release the answer term is never taught, tie or not
    blocked = _scores([("arithmetic", ENSEMBLE, 0.5, 6.0, 1.0), ("arithmetic", VERIFY_LOOP, 0.5, 6.5, 0.5),
                       ("code", TEST_LOOP, 1.0, 2.0, 1.0)])
    assert blocked.choose()["arithmetic"].dsl == ENSEMBLE
