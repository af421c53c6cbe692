"""The supervised warm start: teach the director the workflow that works, before CWRPO refines it.

A small director explores badly: the untrained embedded SmolLM2 adds the same loop three times and
never finishes, so every CWRPO group scores -1 and there is nothing to learn from. The warm start
gives RL a policy worth refining, with three stages that each save their output under
``<run_dir>/warmstart/`` (a resumed run skips what is done):

1. **search** (``search.json``): :func:`flowsteer.evaluation.search.asearch_workflows` runs the
   candidate workflows on training tasks of each family with the run's executor and keeps the
   winner per family (:meth:`~flowsteer.evaluation.search.SearchResult.choose`: among tied
   candidates, the skeleton the families share, so one director learns one action sequence);
2. **demonstrations** (``demos.jsonl``): the director plays the winner on other training tasks,
   one action per turn. Its turns are decoded through the *real* action grammar with a teacher
   that, at each step, keeps only the allowed token that continues the scripted action
   (:class:`ScriptedActions`), so each demonstration holds exactly the token ids, prompt and
   grammar record that the constrained director would produce itself;
3. **supervised update** (``trainable.safetensors``, ``done.json``): a few epochs of the constrained log-likelihood of those
   turns (the same masked, renormalised log-probs CWRPO optimises; tokens the grammar forces have
   log-prob 0 and no gradient).

It works for any registry: candidates are DSL strings over the user's operators, and the replay
turns a workflow into canvas actions through the IR (:func:`workflow_actions`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from flowsteer.errors import UserError

from .checkpoint import load_trainable, save_trainable
from .config import CWRPOConfig

__all__ = ["workflow_actions", "ScriptedActions", "WarmStartResult", "run_warmstart", "sft_update",
           "load_demos"]

logger = logging.getLogger(__name__)


def workflow_actions(workflow: Any) -> list[Any]:
    """The canvas actions that build ``workflow`` step by step (with node prompts off), then finish.

    Only shapes a single action can add are supported: operators, parallels of single operators,
    conditionals whose branches are single operators, loops of single operators.
    """
    from flowsteer.canvas.actions import AddConditional, AddLoop, AddOperator, AddParallel, Finish
    from flowsteer.workflow.ir import Conditional, Loop, OperatorNode, Parallel

    def single(chain: Sequence[Any], where: str) -> str:
        if len(chain) != 1 or not isinstance(chain[0], OperatorNode):
            raise UserError(f"{where} must be one operator to be replayed as a canvas action "
                            f"(got {len(chain)} step(s)); simplify the candidate workflow")
        return str(chain[0].operator)

    actions: list[Any] = []
    for step in workflow.steps:
        match step:
            case OperatorNode(operator=name):
                actions.append(AddOperator(name))
            case Parallel(branches=branches):
                actions.append(AddParallel(tuple(single(b, "a parallel branch") for b in branches)))
            case Conditional(check=check, on_fail=on_fail, on_pass=on_pass):
                actions.append(AddConditional(check.operator, single(on_fail, "a conditional's fail branch"),
                                              single(on_pass, "a conditional's pass branch") if on_pass else None))
            case Loop(body=body, max_iterations=count):
                names = tuple(s.operator for s in body if isinstance(s, OperatorNode))
                if len(names) != len(body):
                    raise UserError("a loop body must be a chain of operators to be replayed as a canvas action")
                actions.append(AddLoop(names, count))
            case _:
                raise UserError(f"cannot replay step {step!r} as a canvas action")
    actions.append(Finish())
    return actions


class _Teacher:
    """Wraps one turn's grammar processor and keeps only the allowed token that continues ``target``."""

    def __init__(self, inner: Any, target: str, pieces: Sequence[str], eos_ids: Sequence[int], prompt_len: int) -> None:
        self.inner, self.target, self.pieces = inner, target, pieces
        self.eos_ids, self.prompt_len = list(eos_ids), prompt_len
        self.diverged = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        scores = self.inner(input_ids, scores)  # [1, V]
        done = "".join(self.pieces[int(t)] for t in input_ids[0, self.prompt_len:].tolist())
        rest = self.target[len(done):] if self.target.startswith(done) else None
        allowed = torch.nonzero(torch.isfinite(scores[0])).flatten().tolist()
        choice = None
        if rest == "":
            choice = next((t for t in allowed if t in self.eos_ids), None)
        elif rest is not None:
            fitting = [t for t in allowed if self.pieces[t] and rest.startswith(self.pieces[t])]
            choice = max(fitting, key=lambda t: len(self.pieces[t]), default=None)
        if choice is None:  # the grammar cannot spell the script here: leave the turn to the model
            self.diverged = True
            return scores
        forced = torch.full_like(scores, float("-inf"))
        forced[0, choice] = 0.0
        return forced


class ScriptedActions:
    """A director constraint that decodes scripted actions through another constraint's grammar.

    ``scripts`` maps a task question to the action texts of its episode (``render_action`` of
    :func:`workflow_actions`); turn ``k`` of the canvas gets ``scripts[question][k]``. Tasks
    without a script, and prompt turns, get the inner constraint unchanged.
    """

    def __init__(self, inner: Any, scripts: Mapping[str, Sequence[str]], tokenizer: Any) -> None:
        self.inner = inner
        self.scripts = dict(scripts)
        self.tokenizer = tokenizer
        self._pieces: list[str] | None = None

    def pieces(self) -> list[str]:
        if self._pieces is None:
            size = max(len(self.tokenizer), int(getattr(self.tokenizer, "vocab_size", 0)))
            self._pieces = list(self.tokenizer.batch_decode([[i] for i in range(size)]))
        return self._pieces

    def __call__(self, observation: Any, registry: Any, model: Any) -> Mapping[str, Any] | None:
        kwargs = self.inner(observation, registry, model)
        task = getattr(observation, "task", None)
        question = getattr(task, "question", None)
        script = self.scripts.get(question) if isinstance(question, str) else None
        turn = int(getattr(observation, "turn", 0))
        if kwargs is None or script is None or turn >= len(script) or "logits_processor_factory" not in kwargs:
            return kwargs
        factory, target = kwargs["logits_processor_factory"], script[turn]
        from flowsteer.constrain.record import CONSTRAINT_RECORD_KEY

        eos = (kwargs.get(CONSTRAINT_RECORD_KEY) or {}).get("eos_ids") or [self.tokenizer.eos_token_id]
        pieces = self.pieces()

        def teacher(prompt_ids: Sequence[int], messages: Any = None) -> _Teacher:
            return _Teacher(factory(prompt_ids, messages), target, pieces, eos, len(prompt_ids))

        return {**kwargs, "logits_processor_factory": teacher}


@dataclass(frozen=True)
class Demo:
    """One demonstration episode: its task, workflow and the token record of every turn."""

    task_id: str
    family: str
    dsl: str
    turns: tuple[dict[str, Any], ...]
    """``{"prompt_ids", "completion_ids", "constraint"}`` per director call."""


@dataclass(frozen=True)
class WarmStartResult:
    """What the warm start chose and how the supervised update went."""

    best: Mapping[str, str]
    """Family -> the workflow the director was taught."""
    demos: int
    losses: tuple[float, ...]
    """Mean loss per epoch."""
    seconds: Mapping[str, float]
    """Wall time of each stage (search, demos, sft; 0 when reused from disk)."""


def load_demos(path: str | Path) -> list[Demo]:
    out = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            out.append(Demo(d["task_id"], d["family"], d["dsl"], tuple(d["turns"])))
        except (ValueError, KeyError) as exc:
            raise UserError(f"{path}:{number}: not a demonstration record ({exc}); delete the file to "
                            "replay the demonstrations again") from exc
    return out


def _by_family(tasks: Sequence[Any]) -> dict[str, list[Any]]:
    from flowsteer.evaluation.search import family_of

    grouped: dict[str, list[Any]] = defaultdict(list)
    for task in tasks:
        grouped[family_of(task)].append(task)
    return grouped


async def _collect_demos(rollout: Any, tokenizer: Any, best: Mapping[str, str], tasks: Mapping[str, list[Any]],
                         registry: Any) -> list[Demo]:
    from flowsteer.canvas import render_action
    from flowsteer.director import Director
    from flowsteer.evaluation.cache import item_scope
    from flowsteer.workflow.dsl import parse

    scripts, family_dsl = {}, {}
    for family, dsl in best.items():
        actions = [render_action(a) for a in workflow_actions(parse(dsl, registry))]
        for task in tasks.get(family, []):
            scripts[task.question] = actions
            family_dsl[task.question] = (family, dsl)
    base = rollout.director
    teacher = ScriptedActions(base.config.constraint, scripts, tokenizer)
    director = Director(base.model, registry=base.registry,
                        config=replace(base.config, constraint=teacher, temperature=0.0, repair_attempts=0))
    gate = asyncio.Semaphore(max(1, rollout.concurrency))

    async def one(task: Any) -> Any:
        async with gate:
            with item_scope():
                return await director.arun(task, rollout.make_canvas(), on_error="raise")

    trajectories = await asyncio.gather(*(one(t) for ts in tasks.values() for t in ts if t.question in scripts))
    demos = []
    for traj in trajectories:
        family, dsl = family_dsl[traj.task.question]
        got = traj.workflow.dsl if not traj.workflow.is_empty else ""
        if traj.stop_reason != "finish" or got != parse(dsl, registry).dsl:
            logger.warning("demonstration on %s did not reproduce %r (got %r, %s); skipped",
                           traj.task.id, dsl, got, traj.stop_reason)
            continue
        turns = tuple({"prompt_ids": list(t.tokens.prompt_ids), "completion_ids": list(t.tokens.completion_ids),
                       "constraint": t.tokens.constraint} for t in traj.turns if t.tokens is not None)
        demos.append(Demo(traj.task.id or traj.task.question[:60], family, dsl, turns))
    return demos


def sft_update(model: Any, tokenizer: Any, demos: Sequence[Demo], *, epochs: int, lr: float,
               micro_batch_size: int, max_row_tokens: int | None = None, seed: int = 0,
               on_epoch: Any = None) -> list[float]:
    """Maximise the constrained log-likelihood of the demonstrations' turns; returns the mean loss
    per epoch. Log-probs are those of :func:`~flowsteer.training.policy.token_logprobs` with the
    grammar replay, the distribution the constrained director samples from at temperature 1."""
    import random

    import torch

    from flowsteer.director import TokenRecord

    from .batch import build_batch
    from .constrained import ConstraintReplay
    from .policy import token_logprobs, trainable_parameters

    if not demos:
        raise UserError("the warm start has no demonstrations to learn from (every replay diverged); "
                        "check the candidate workflows and the action grammar options")
    device = next(model.parameters()).device
    replay = ConstraintReplay(tokenizer, model=model)
    params = trainable_parameters(model)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    pad = getattr(tokenizer, "pad_token_id", None)
    records = [[TokenRecord(t["prompt_ids"], t["completion_ids"], [0.0] * len(t["completion_ids"]), t["constraint"])
                for t in d.turns] for d in demos]
    order = list(range(len(records)))
    rng = random.Random(seed)
    losses = []
    model.train()
    for epoch in range(epochs):
        rng.shuffle(order)
        total, count = 0.0, 0
        for start in range(0, len(order), micro_batch_size):
            chunk = [records[i] for i in order[start:start + micro_batch_size]]
            batch = build_batch(chunk, [1.0] * len(chunk), pad_token_id=int(pad) if pad is not None else 0,
                                max_row_tokens=max_row_tokens).to(device)
            wanted = batch.loss_mask > 0  # [R, T]
            lp = token_logprobs(model, batch.input_ids, batch.attention_mask, segments=batch.segments,
                                replay=replay, wanted=wanted)  # [R, T]
            decided = wanted & (lp.detach() < -1e-6)  # tokens the grammar forced carry no decision
            loss = -(lp * decided).sum() / decided.sum().clamp(min=1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            total, count = total + float(loss.detach()), count + 1
        losses.append(total / max(count, 1))
        logger.info("warm start epoch %d/%d: loss %.4f", epoch + 1, epochs, losses[-1])
        if on_epoch is not None:
            on_epoch(epoch + 1, losses[-1])
    return losses


def run_warmstart(config: CWRPOConfig, *, model: Any, tokenizer: Any, rollout: Any, tasks: Sequence[Any],
                  run_dir: str | Path) -> WarmStartResult:
    """All three stages (each skipped when its output is already in ``<run_dir>/warmstart``)."""
    from flowsteer.evaluation.search import SearchResult, asearch_workflows

    ws = config.warmstart
    folder = Path(run_dir) / "warmstart"
    folder.mkdir(parents=True, exist_ok=True)
    families = _by_family(tasks)
    registry = rollout.director.registry
    seconds = {"search": 0.0, "demos": 0.0, "sft": 0.0}

    search_file = folder / "search.json"
    if search_file.is_file():
        result = SearchResult.load(search_file)
    else:
        started = time.perf_counter()
        sample = [t for ts in families.values() for t in ts[: ws.search_tasks]]
        candidates = {k: tuple(v) for k, v in ws.candidates.items()} or None
        result = asyncio.run(asearch_workflows(sample, rollout.executor, candidates, registry=registry,
                                               reward_config=rollout.reward_config, sandbox=rollout.sandbox,
                                               concurrency=ws.search_concurrency))
        result.save(search_file)
        (folder / "search.md").write_text(result.markdown() + "\n", encoding="utf-8")
        seconds["search"] = time.perf_counter() - started
    chosen = result.choose(registry, shared_structure=ws.shared_structure, tolerance=ws.tie_tolerance)
    best = {family: score.dsl for family, score in chosen.items()}
    logger.info("warm start: best workflows %s", best)

    demo_file = folder / "demos.jsonl"
    if demo_file.is_file():
        demos = load_demos(demo_file)
    else:
        started = time.perf_counter()
        demo_tasks = {f: ts[ws.search_tasks: ws.search_tasks + ws.demo_tasks] or ts[: ws.demo_tasks]
                      for f, ts in families.items()}
        demos = asyncio.run(_collect_demos(rollout, tokenizer, best, demo_tasks, registry))
        demo_file.write_text("".join(json.dumps(d.__dict__) + "\n" for d in demos), encoding="utf-8")
        seconds["demos"] = time.perf_counter() - started

    weights = folder / "trainable.safetensors"
    done = folder / "done.json"
    if done.is_file() and weights.is_file():
        load_trainable(model, weights)
        summary = json.loads(done.read_text(encoding="utf-8"))
        return WarmStartResult(best, len(demos), tuple(summary.get("losses", ())), seconds)
    started = time.perf_counter()
    max_row = config.director_config.context_budget + config.director_config.max_action_tokens
    losses = sft_update(model, tokenizer, demos, epochs=ws.epochs, lr=ws.lr, micro_batch_size=ws.micro_batch_size,
                        max_row_tokens=max_row, seed=config.seed)
    seconds["sft"] = time.perf_counter() - started
    save_trainable(model, weights)
    done.write_text(json.dumps({"best": best, "demos": len(demos), "losses": losses, "seconds": seconds},
                               indent=1), encoding="utf-8")
    return WarmStartResult(best, len(demos), tuple(losses), seconds)
