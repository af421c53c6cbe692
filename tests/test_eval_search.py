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
