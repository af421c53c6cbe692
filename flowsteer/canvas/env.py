"""The Workflow Canvas: the environment the director edits one action per turn.

``reset(task)`` starts an episode on an empty workflow; ``step(text)`` reads one model output and
returns ``(observation, done, info)``. Model text never raises: a malformed action, an unknown
node id or a refused edit becomes feedback and the turn is consumed. Developer mistakes (stepping
before ``reset`` or after the episode ended, a bad config) raise :class:`~flowsteer.errors.UserError`.

States (spec section 5):

* ``BUILDING`` accepts actions (add, add parallel/conditional/loop, delete, modify, set_prompt,
  finish).
* ``AWAITING_PROMPT`` follows an add or a modify: each next turn's text is the prompt of one new
  node (a structure asks once per child, in order). New nodes are placed at once, so a prompt
  request can name the node's id; the workflow runs once the last prompt is in.

Every completed edit runs the workflow through :class:`~flowsteer.workflow.interpreter.Interpreter` with a
per-episode :class:`~flowsteer.workflow.interpreter.NodeCache`, so a node whose operator, prompt, input and
feedback did not change is not re-run. Every ``step`` call, failed or not, counts as a turn; after
``max_turns`` the episode ends (``stop_reason == "max_turns"``) with the current workflow.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flowsteer.canvas._edits import Editor, EditOutcome
from flowsteer.canvas.actions import Action, AddOperator, Finish, syntax_of
from flowsteer.canvas.constraints import FinishConstraints
from flowsteer.canvas.feedback import PromptRequest, render_feedback
from flowsteer.canvas.parser import extract_prompt, parse_action
from flowsteer.errors import ParseFailure, UserError
from flowsteer.operators.registry import OperatorRegistry, default_registry
from flowsteer.sync import run_sync
from flowsteer.tasks import Task
from flowsteer.workflow.interpreter import ExecutionResult, Interpreter, NodeCache
from flowsteer.workflow.ir import Workflow

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from flowsteer.sandbox import Sandbox

__all__ = ["Canvas", "CanvasConfig", "CanvasState", "Observation", "StepInfo", "PromptRequest", "EMPTY_CANVAS_MESSAGE",
           "initial_feedback"]

logger = logging.getLogger(__name__)


class CanvasState(enum.StrEnum):
    """What the canvas expects from the next turn."""

    BUILDING = "building"
    AWAITING_PROMPT = "awaiting_prompt"


DEFAULT_MAX_TURNS = 20
"""Turns per episode unless a config says otherwise (the one literal: ``DirectorConfig`` uses it too)."""
DEFAULT_FEEDBACK_CHARS = 1500
"""Longest feedback block unless a config says otherwise (``DirectorConfig`` uses it too)."""


@dataclass(frozen=True)
class CanvasConfig:
    """Settings of one canvas (defaults follow the paper's configuration)."""

    max_turns: int = DEFAULT_MAX_TURNS
    """Turns per episode; every ``step`` call counts, including prompt turns and failures. The canvas
    is the one place the limit is enforced (a director runs until its canvas is done)."""
    finish: FinishConstraints = field(default_factory=FinishConstraints)
    """What ``finish`` requires."""
    execute_each_step: bool = True
    """Run the workflow after every completed edit (else only at finish and at the turn limit)."""
    result_chars: int = 500
    """Longest execution result shown in feedback."""
    feedback_chars: int = DEFAULT_FEEDBACK_CHARS
    """Longest feedback block, tags included (the canvas fits its sections into it; nothing cuts it again)."""
    min_prompt_chars: int = 5
    """Shorter node prompts are refused."""
    max_prompt_chars: int = 2000
    """Longer node prompts are cut to this length."""
    max_nodes: int = 40
    """Most nodes (operators and structures) a workflow may hold."""
    max_repeats: int = 3
    """Most identical operators in a row in one chain (the paper's hard rule); longer runs are refused."""
    lenient: bool = True
    """Accept the spec's non-strict fallback (finish phrase, a lone operator name); see the parser."""
    write_prompts: bool = True
    """Ask for each new node's prompt (the AWAITING_PROMPT turns). False: new nodes keep their
    operator's own instructions and the workflow runs right after the edit, so an episode takes one
    turn per action (what a small director on CPU can afford)."""

    def __post_init__(self) -> None:
        checks = {
            "max_turns": (self.max_turns, 1),
            "result_chars": (self.result_chars, 20),
            "feedback_chars": (self.feedback_chars, 200),
            "min_prompt_chars": (self.min_prompt_chars, 0),
            "max_prompt_chars": (self.max_prompt_chars, max(self.min_prompt_chars, 1)),
            "max_nodes": (self.max_nodes, 1),
            "max_repeats": (self.max_repeats, 1),
        }
        for name, (value, least) in checks.items():
            if not isinstance(value, int) or value < least:
                raise UserError(f"CanvasConfig.{name} must be an integer >= {least}, got {value!r}")
        if not isinstance(self.finish, FinishConstraints):
            raise UserError("CanvasConfig.finish must be a FinishConstraints(...)")


EMPTY_CANVAS_MESSAGE = ("The canvas is empty. Build a workflow one action per turn, then finish. "
                        "Start with e.g. " + syntax_of(AddOperator).form())
"""The ``[Message]`` of a fresh canvas."""


def initial_feedback(registry: OperatorRegistry, config: CanvasConfig | None = None,
                     task: Task | None = None) -> str:
    """The feedback block :meth:`Canvas.reset` shows, without building a canvas (the director's
    worked example uses it, so the example turn reads exactly like a real first turn)."""
    config = config or CanvasConfig()
    return render_feedback(status="Ready", message=EMPTY_CANVAS_MESSAGE, workflow=Workflow(), registry=registry,
                           turn=0, max_turns=config.max_turns, result_chars=config.result_chars,
                           feedback_chars=config.feedback_chars, task=task)


@dataclass(frozen=True)
class Observation:
    """What the director reads after a turn."""

    text: str
    """The ``<feedback>`` block."""
    state: CanvasState
    turn: int
    max_turns: int
    dsl: str
    """The current workflow's DSL ("" when empty)."""
    prompt_request: PromptRequest | None = None
    """Set while the canvas waits for a node prompt."""
    workflow: Workflow | None = None
    """The canvas's workflow itself, node ids included (what ``dsl`` renders). ``None`` only in an
    observation built by hand; readers then fall back to parsing ``dsl`` and ``[Nodes]``."""


@dataclass(frozen=True)
class StepInfo:
    """What one turn did (for trajectories, logging and tests)."""

    action: Action | None
    """The parsed action (None on prompt turns and parse failures)."""
    parse_failure: ParseFailure | None
    accepted: bool
    """False when the text was unusable or the edit was refused."""
    message: str
    execution: ExecutionResult | None
    """The workflow run this turn triggered, if any."""
    finished: bool
    stop_reason: str | None
    """``"finish"`` or ``"max_turns"`` when the episode ended this turn."""
    prompt: str | None = None
    """The prompt accepted on a prompt turn."""


class Canvas:
    """The Workflow Canvas environment (see the module docstring).

    ``executor`` is the chat model the workflow's operators call (an :class:`Interpreter` is built
    for it with ``sandbox`` and ``registry``) or a ready :class:`Interpreter`, whose registry is then
    the default.
    """

    def __init__(
        self,
        executor: BaseChatModel | Interpreter,
        *,
        registry: OperatorRegistry | None = None,
        sandbox: Sandbox | None = None,
        config: CanvasConfig | None = None,
    ) -> None:
        if isinstance(executor, Interpreter):
            self.registry = registry or executor.registry
        else:
            self.registry = registry or default_registry()
        self.interpreter = Interpreter.of(executor, registry=self.registry, sandbox=sandbox)
        self.config = config or CanvasConfig()
        self._editor = Editor(self.registry, self.config.max_nodes, self.config.max_repeats)
        self._task: Task | None = None
        self._clear()

    def _clear(self) -> None:
        self._workflow = Workflow()
        self._state = CanvasState.BUILDING
        self._turn = 0
        self._done = False
        self._stop_reason: str | None = None
        self._pending: list[PromptRequest] = []
        self._last_execution: ExecutionResult | None = None
        self._executed: Workflow | None = None
        self._history: list[StepInfo] = []
        self._cache = NodeCache()
        self._observation: Observation | None = None

    # -- read-only view --------------------------------------------------------------------------
    @property
    def state(self) -> CanvasState:
        return self._state

    @property
    def workflow(self) -> Workflow:
        return self._workflow

    @property
    def turn(self) -> int:
        """Turns taken so far in this episode."""
        return self._turn

    @property
    def task(self) -> Task | None:
        return self._task

    @property
    def done(self) -> bool:
        return self._done

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    @property
    def last_execution(self) -> ExecutionResult | None:
        return self._last_execution

    @property
    def answer(self) -> str:
        """The last execution's answer ("" before any run)."""
        return self._last_execution.answer if self._last_execution is not None else ""

    @property
    def history(self) -> list[StepInfo]:
        return list(self._history)

    @property
    def observation(self) -> Observation | None:
        """The latest observation (from ``reset`` or ``step``)."""
        return self._observation

    @property
    def prompt_request(self) -> PromptRequest | None:
        return self._pending[0] if self._pending else None

    @property
    def cache(self) -> NodeCache:
        """This episode's node cache."""
        return self._cache

    @property
    def cache_hits(self) -> int:
        return self._cache.hits

    @property
    def cache_misses(self) -> int:
        return self._cache.misses

    # -- episode -----------------------------------------------------------------------------------
    def reset(self, task: Task | str) -> Observation:
        """Start a new episode for ``task`` (a string becomes a math-kind :class:`Task`)."""
        if isinstance(task, str):
            task = Task(task)
        if not isinstance(task, Task):
            raise UserError(f"Canvas.reset expects a flowsteer Task, got {type(task).__name__}")
        self._task = task
        self._editor.kind = task.kind
        self._clear()
        self._observation = self._observe("Ready", EMPTY_CANVAS_MESSAGE, None)
        return self._observation

    async def areset(self, task: Task | str) -> Observation:
        """Async twin of :meth:`reset`."""
        return self.reset(task)

    def step(self, text: str) -> tuple[Observation, bool, StepInfo]:
        """Apply one model output (runs :meth:`astep` in a fresh event loop).

        Inside a running event loop, and with executors whose async clients are bound to one loop,
        call ``await canvas.astep(text)`` instead.
        """
        return run_sync(self.astep(text), refuse_in_loop="Canvas.step(): use `await canvas.astep(text)` there")

    async def astep(self, text: str, *, parsed: Action | ParseFailure | None = None,
                    ) -> tuple[Observation, bool, StepInfo]:
        """Async twin of :meth:`step`. ``parsed`` is ``text`` already parsed by
        :meth:`parse` (a director that read the action to decide on a repair passes it, so a turn is
        parsed once); it is ignored on prompt turns."""
        if self._task is None:
            raise UserError("call canvas.reset(task) before step()")
        if self._done:
            raise UserError(f"the episode is over (stop reason: {self._stop_reason}); call "
                            "canvas.reset(task) to start a new one")
        if not isinstance(text, str):
            raise UserError(f"Canvas.step expects the model's text as str, got {type(text).__name__}")
        self._turn += 1
        if self._state is CanvasState.AWAITING_PROMPT:
            outcome = await self._prompt_turn(text)
        else:
            if parsed is None:
                parsed = self.parse(text)
            if isinstance(parsed, ParseFailure):
                outcome = EditOutcome(False, f"Invalid action: {parsed.message}", parse_failure=parsed)
            else:
                outcome = await self._apply(parsed)
        stop_reason = "finish" if outcome.finished else None
        if not self._done and self._turn >= self.config.max_turns:
            outcome = await self._turn_limit(outcome)
            stop_reason = "max_turns"
        info = StepInfo(outcome.action, outcome.parse_failure, outcome.accepted, outcome.message,
                        outcome.execution, self._done, stop_reason, outcome.prompt)
        self._history.append(info)
        status = _status(outcome, self._state, self._done)
        shown = outcome.execution if outcome.execution is not None else (
            self._last_execution if self._state is CanvasState.BUILDING else None)
        self._observation = self._observe(status, outcome.message, shown)
        logger.debug("turn %d: %s (%s)", self._turn, status, outcome.message[:80])
        return self._observation, self._done, info

    def parse(self, text: str) -> Action | ParseFailure:
        """``text`` read as an action the way this canvas reads it (its registry and leniency)."""
        return parse_action(text, self.registry, lenient=self.config.lenient)

    # -- turns ---------------------------------------------------------------------------------------
    async def _prompt_turn(self, text: str) -> EditOutcome:
        request = self._pending[0]
        prompt = extract_prompt(text)
        if isinstance(prompt, ParseFailure):
            return EditOutcome(False, f"Prompt not accepted: {prompt.message}", parse_failure=prompt)
        if len(prompt) < self.config.min_prompt_chars:
            return EditOutcome(False, f"Prompt is too short or empty (at least {self.config.min_prompt_chars} "
                               f"characters): write one to three sentences for {request.node_id} "
                               f"({request.operator})")
        prompt = prompt[: self.config.max_prompt_chars]
        self._workflow = self._editor.with_prompt(self._workflow, request.node_id, prompt)
        self._pending.pop(0)
        if self._pending:
            nxt = self._pending[0]
            return EditOutcome(True, f"Prompt set for {request.node_id}. Now write the prompt for "
                               f"{nxt.node_id} ({nxt.operator}).", prompt=prompt)
        self._state = CanvasState.BUILDING
        execution = await self._execute()
        return EditOutcome(True, f"Prompt set for {request.node_id}; {_ran(execution)}",
                           execution=execution, prompt=prompt)

    async def _apply(self, action: Action) -> EditOutcome:
        if isinstance(action, Finish):
            return await self._finish(action)
        assert self._task is not None
        edit = self._editor.apply(self._workflow, action, self.config.min_prompt_chars,
                                  self.config.max_prompt_chars)
        if edit.workflow is None:
            return EditOutcome(False, f"Edit refused: {edit.message}", action=action)
        self._workflow = edit.workflow
        if edit.requests and self.config.write_prompts:
            self._pending = list(edit.requests)
            self._state = CanvasState.AWAITING_PROMPT
            first = self._pending[0]
            return EditOutcome(True, f"{edit.message} Now write the prompt for {first.node_id} "
                               f"({first.operator}).", action=action)
        if self._workflow.is_empty:
            self._last_execution = None
            self._executed = self._workflow
            return EditOutcome(True, f"{edit.message} the canvas is empty now.", action=action)
        execution = await self._execute()
        return EditOutcome(True, f"{edit.message} {_ran(execution)}", action=action, execution=execution)

    async def _finish(self, action: Finish) -> EditOutcome:
        assert self._task is not None
        execution = None
        if self._stale():
            execution = await self._run()
        reasons = self.config.finish.check(self._workflow, self._task, self._last_execution, self.registry)
        if reasons:
            return EditOutcome(False, "Finish rejected: " + "; ".join(reasons), action=action,
                               execution=execution)
        self._done = True
        self._stop_reason = "finish"
        return EditOutcome(True, "Workflow finished.", action=action, execution=execution, finished=True)

    async def _turn_limit(self, outcome: EditOutcome) -> EditOutcome:
        """End the episode at the turn limit, running the final workflow if it changed."""
        execution = outcome.execution
        if self._stale():
            execution = await self._run()
        self._pending = []
        self._state = CanvasState.BUILDING
        self._done = True
        self._stop_reason = "max_turns"
        message = (f"{outcome.message} Turn limit reached ({self._turn}/{self.config.max_turns}): the "
                   "episode ends with the current workflow.")
        return EditOutcome(outcome.accepted, message, action=outcome.action,
                           parse_failure=outcome.parse_failure, execution=execution, prompt=outcome.prompt)

    # -- execution -------------------------------------------------------------------------------
    def _stale(self) -> bool:
        return not self._workflow.is_empty and self._workflow != self._executed

    async def _execute(self) -> ExecutionResult | None:
        if not self.config.execute_each_step:
            return None
        return await self._run()

    async def _run(self) -> ExecutionResult:
        assert self._task is not None
        result = await self.interpreter.arun(self._workflow, self._task, cache=self._cache)
        self._last_execution = result
        self._executed = self._workflow
        return result

    def _observe(self, status: str, message: str, execution: ExecutionResult | None) -> Observation:
        request = self._pending[0] if self._pending and not self._done else None
        dsl = self._workflow.dsl if not self._workflow.is_empty else ""
        text = render_feedback(
            status=status, message=message, workflow=self._workflow, registry=self.registry,
            turn=self._turn, max_turns=self.config.max_turns, execution=execution,
            prompt_request=request, result_chars=self.config.result_chars,
            feedback_chars=self.config.feedback_chars, task=self._task, dsl=dsl or None,
        )
        return Observation(text, self._state, self._turn, self.config.max_turns, dsl, request, self._workflow)


def _ran(execution: ExecutionResult | None) -> str:
    if execution is None:
        return "workflow not run (execute_each_step is off)."
    if execution.error is not None:
        return "the workflow ran and failed (see [Error])."
    if execution.node_errors:
        return "the workflow ran; a node reported an error (see [Error])."
    return "the workflow ran (see [Result])."


def _status(outcome: EditOutcome, state: CanvasState, done: bool) -> str:
    if done:
        return "Finished"
    if not outcome.accepted:
        return "Failed"
    if state is CanvasState.AWAITING_PROMPT:
        return "Awaiting Prompt"
    return "Success"
