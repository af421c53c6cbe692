"""The 12 built-in operators: parsing, behaviour, prompts, usage, and the code-running ones."""

from __future__ import annotations

import pytest
from langchain_core.callbacks import BaseCallbackHandler

from flowsteer.operators import (
    BUILTIN_NAMES,
    OperatorCall,
    OperatorContext,
    OperatorResult,
    Role,
    default_registry,
)
from flowsteer.operators.llm import SECTION_FEEDBACK, SECTION_GUIDANCE, load_prompt, operator_header
from flowsteer.operators.parsing import (
    answer_key,
    extract_code,
    extract_tag,
    parse_choice,
    parse_number,
    parse_verdict,
)
from flowsteer.tasks import Task
from flowsteer.testing import ScriptedChatModel

MATH = Task("Tom has 3 apples and buys 4 more. How many apples does he have?", kind="math", answer="7")
CODE = Task("Write add(a, b) returning the sum.", kind="code", entry_point="add",
            public_tests="assert add(1, 2) == 3\n", hidden_tests="assert add(2, 2) == 5\n")


class NoSandbox:
    """LLM-only operators must never touch the sandbox."""

    async def arun(self, *args, **kwargs):
        raise AssertionError("this operator must not run code")

    async def acheck(self, *args, **kwargs):
        raise AssertionError("this operator must not run code")


def make(name: str, model, sandbox=None):
    context = OperatorContext(model=model, sandbox=sandbox or NoSandbox())
    return default_registry().get(name).factory(context)


async def run(name: str, replies, *, task: Task = MATH, input=None, prompt: str = "", feedback=None,
              params=None, sandbox=None) -> tuple[OperatorResult, ScriptedChatModel]:
    model = ScriptedChatModel(replies if isinstance(replies, list) else [replies])
    call = OperatorCall(task=task, input=input, prompt=prompt, feedback=feedback, params=params or {},
                        node_id="node_1")
    return await make(name, model, sandbox).arun(call), model


def user_text(model: ScriptedChatModel, index: int = -1) -> str:
    return model.calls[index][-1].content


# -- parsing ---------------------------------------------------------------------------------
def test_extract_tag_is_tolerant():
    assert extract_tag("<answer> 42 </answer>", "answer") == "42"
    assert extract_tag("<ANSWER>7</Answer>", "answer") == "7"
    assert extract_tag("<answer>1</answer> then <answer>2</answer>", "answer") == "2"
    assert extract_tag("<answer>5\n<verdict>pass", "answer") == "5"  # never closed
    assert extract_tag("<answer></answer>", "answer") is None
    assert extract_tag("no tags", "answer") is None
    assert extract_tag("<think><answer>9</answer></think><answer>3</answer>", "answer") == "3"


def test_extract_code_prefers_tag_then_fence_then_bare_program():
    assert extract_code("<code>\n```python\nx = 1\n```\n</code>") == "x = 1"
    fenced = "Here:\n```python\ndef f():\n    return 1\n```\nand a short one\n```\nx\n```"
    assert extract_code(fenced) == "def f():\n    return 1"
    assert extract_code("def g(x):\n    return x") == "def g(x):\n    return x"
    assert extract_code("The answer is 42.") is None
    assert extract_code("```bash\nls\n```") is None


@pytest.mark.parametrize(("text", "expected"), [
    ("<verdict>pass</verdict>", True), ("<verdict>PASS.</verdict>", True), ("<verdict>Correct</verdict>", True),
    ("<verdict>fail</verdict>", False), ("<verdict>not correct</verdict>", False),
    ("<verdict>incorrect</verdict>", False), ("<verdict>maybe</verdict>", None), ("pass", None),
])
def test_parse_verdict(text, expected):
    assert parse_verdict(text) is expected


def test_numbers_choices_and_answer_keys():
    assert parse_number("1,200") == 1200
    assert parse_number("$12.50") == parse_number("12.5")
    assert parse_number("3/4") == parse_number("0.75")
    assert parse_number("x = 4") is None
    assert parse_choice("<choice>b</choice>", 3) == 1
    assert parse_choice("<choice>Candidate C</choice>", 3) == 2
    assert parse_choice("<choice>D</choice>", 3) is None
    assert answer_key("42.0") == answer_key("42")
    assert answer_key("Paris.") == answer_key("paris")


# -- prompts and guidance ------------------------------------------------------------------------
LLM_OPERATORS = [n for n in BUILTIN_NAMES if n != "Test"]


def test_registry_has_the_twelve_with_roles_and_hints():
    registry = default_registry()
    assert BUILTIN_NAMES == ("Plan", "Decompose", "Programmer", "Custom", "AnswerGenerate", "Test",
                             "Review", "Verify", "Revise", "ScEnsemble", "Aggregate", "Format")
    assert {s.name for s in registry.by_role(Role.CHECKING)} >= {"Test", "Review", "Verify"}
    for name in BUILTIN_NAMES:
        spec = registry.get(name)
        assert spec.description and spec.usage_hint and "builtin" in spec.tags
    assert registry.get("Programmer").runs_code and registry.get("Test").runs_code


@pytest.mark.parametrize("name", LLM_OPERATORS)
async def test_every_llm_operator_uses_the_director_prompt(name):
    """The reference ignored the guidance of AnswerGenerate and ScEnsemble; we do not."""
    replies = {"ScEnsemble": "<choice>A</choice>", "Aggregate": "<answer>7</answer>",
               "Programmer": "<code>def solve():\n    return 7</code>"}
    candidates = ("7 apples", "8 apples") if name in ("ScEnsemble", "Aggregate") else "The total is 7."
    model = ScriptedChatModel([replies.get(name, "<answer>7</answer>")], default="<answer>7</answer>")
    op = make(name, model, sandbox=_sandbox_or_none() if name == "Programmer" else None)
    if name == "Programmer" and op.context.sandbox.__class__ is NoSandbox:
        pytest.skip("flowsteer.sandbox is not available yet")
    await op.arun(OperatorCall(task=MATH, input=candidates, prompt="Count the apples twice, carefully."))
    system, user = model.calls[0]
    assert system.content.startswith(operator_header(name))
    assert f"{SECTION_GUIDANCE}\nCount the apples twice, carefully." in user.content
    assert MATH.question in user.content
    assert load_prompt(op.prompt_file).splitlines()[0] == operator_header(name)


def _sandbox_or_none():
    try:
        from flowsteer.sandbox import Sandbox
    except ImportError:
        return None
    return Sandbox()


# -- planning and solving --------------------------------------------------------------------------
async def test_plan_parses_steps_and_records_usage():
    result, model = await run("Plan", "<approach>Add.</approach>\n<plan>\n1. Read counts\n2) Add them\n</plan>")
    assert result.ok and result.data["steps"] == ("Read counts", "Add them")
    assert result.output == "Approach: Add.\nPlan:\n1. Read counts\n2. Add them"
    assert result.usage.calls == 1 and result.usage.input_tokens > 0 and result.usage.output_tokens > 0


async def test_plan_without_tags_falls_back_to_numbered_lines_and_errors_as_a_value():
    result, _ = await run("Plan", "Sure!\n1. count\n2. add")
    assert result.data["steps"] == ("count", "add")
    bad, _ = await run("Plan", "I would just add them.")
    assert bad.error and not bad.ok and bad.output == "I would just add them."


async def test_decompose_lists_sub_problems():
    result, _ = await run("Decompose", "<sub_problems>\n- apples before\n- apples bought\n</sub_problems>")
    assert result.data["sub_problems"] == ("apples before", "apples bought")
    assert result.output.startswith("Sub-problems:\n1. apples before")


async def test_custom_passes_whole_reply_and_sees_previous_result():
    result, model = await run("Custom", "<think>hmm</think>3 + 4 = 7. <answer>7</answer>", input="Plan: add")
    assert result.output == "3 + 4 = 7. <answer>7</answer>" and result.data["answer"] == "7"
    assert "Plan: add" in user_text(model)
    empty, _ = await run("Custom", "   ", input="previous")
    assert empty.error and empty.output == "previous"


async def test_answer_generate_outputs_bare_answer_or_a_parse_error():
    result, _ = await run("AnswerGenerate", "<thought>3+4</thought>\n<answer>7</answer>")
    assert result.output == "7" and result.data["thought"] == "3+4"
    bad, _ = await run("AnswerGenerate", "It is seven.")
    assert bad.error and "<answer>" in bad.error


# -- checkers ------------------------------------------------------------------------------------------
async def test_review_passes_solution_through_with_verdict_and_feedback():
    result, _ = await run("Review", "<verdict>fail</verdict><feedback>3+4 is 7, not 8</feedback>", input="8")
    assert (result.output, result.verdict, result.feedback) == ("8", False, "3+4 is 7, not 8")
    ok, _ = await run("Review", "<verdict>pass</verdict>", input="7")
    assert ok.verdict is True and ok.output == "7" and ok.feedback
    odd, _ = await run("Review", "Looks fine to me", input="7")
    assert odd.verdict is None and odd.error and odd.output == "7"


async def test_verify_overwrites_only_when_confident():
    reply = "<answer>7</answer><verdict>fail</verdict><confidence>high</confidence><feedback>off by one</feedback>"
    result, _ = await run("Verify", reply, input="8")
    assert result.verdict is False and result.output == "7" and result.data["overwritten"]
    assert "off by one" in result.feedback and "7" in result.feedback
    unsure, _ = await run("Verify", reply.replace("high", "low"), input="8")
    assert unsure.verdict is False and unsure.output == "8" and not unsure.data["overwritten"]


async def test_verify_infers_verdict_from_its_own_answer():
    agree, _ = await run("Verify", "<answer>7.0</answer>", input="He has 7 apples.\nAnswer: 7")
    assert agree.verdict is True
    disagree, _ = await run("Verify", "<answer>9</answer>", input="7")
    assert disagree.verdict is False and disagree.output == "7"
    nothing, _ = await run("Verify", "no idea", input="7")
    assert nothing.verdict is None and nothing.error


# -- revise and format ----------------------------------------------------------------------------------
async def test_revise_acts_on_feedback():
    result, model = await run("Revise", "<solution>7</solution>", input="8", feedback="3+4 is 7")
    assert result.output == "7" and result.data["changed"]
    assert f"{SECTION_FEEDBACK}\n3+4 is 7" in user_text(model)
    bad, _ = await run("Revise", "I agree.", input="8", feedback="wrong")
    assert bad.error and bad.output == "8"


async def test_revise_on_code_returns_code():
    reply = "<solution>\n```python\ndef add(a, b):\n    return a + b\n```\n</solution>"
    result, _ = await run("Revise", reply, task=CODE, input="def add(a, b):\n    return a - b", feedback="fails")
    assert result.output == "def add(a, b):\n    return a + b"


async def test_format_extracts_answer_span():
    result, _ = await run("Format", "<answer>7</answer>", input="So he has 7 apples.")
    assert result.output == "7"
    plain, _ = await run("Format", "7", input="So he has 7 apples.")
    assert plain.output == "7"
    bad, _ = await run("Format", "The answer is\nclearly seven", input="So he has 7 apples.")
    assert bad.error and bad.output == "So he has 7 apples."


async def test_format_on_code_returns_clean_code_with_fallback():
    verbose = "Here is my solution:\n```python\ndef add(a, b):\n    return a + b\n```\nHope it helps"
    result, _ = await run("Format", "<code>def add(a, b):\n    return a + b</code>", task=CODE, input=verbose)
    assert result.output == "def add(a, b):\n    return a + b"
    fallback, _ = await run("Format", "<code>print('hi')</code>", task=CODE, input=verbose)
    assert fallback.output == "def add(a, b):\n    return a + b" and fallback.data["fallback"]


# -- ensemblers ------------------------------------------------------------------------------------------
async def test_sc_ensemble_picks_a_candidate_by_letter():
    result, model = await run("ScEnsemble", "<choice>B</choice>", input=("8", "7 apples", "7"))
    assert result.output == "7 apples" and result.data["chosen"] == 1
    assert "Candidate A:\n8" in user_text(model) and "Candidate C:\n7" in user_text(model)
    bad, _ = await run("ScEnsemble", "<choice>Z</choice>", input=("8", "7"))
    assert bad.error and bad.output == "8"


async def test_sc_ensemble_spends_no_call_on_one_or_unanimous_candidates():
    single, model = await run("ScEnsemble", [], input="7")
    assert single.output == "7" and not model.calls
    same, model = await run("ScEnsemble", [], input=("7", "7.0"))
    assert same.output == "7" and same.data["unanimous"] and not model.calls
    empty, _ = await run("ScEnsemble", [], input=None)
    assert empty.error


@pytest.mark.parametrize(("candidates", "expected"), [
    (("12", "12", "12"), "12"), (("12", "1,2", "12.0"), "12"), (("5", "5", "6"), "5"),
])
async def test_aggregate_numeric_fast_path_makes_no_model_call(candidates, expected):
    result, model = await run("Aggregate", [], input=candidates)
    assert result.output == expected and result.data["fast_path"] and not model.calls


async def test_aggregate_asks_the_model_without_a_strict_majority():
    result, model = await run("Aggregate", "<answer>5</answer>", input=("5", "6"))
    assert result.output == "5" and result.data["fast_path"] is False and len(model.calls) == 1
    text, _ = await run("Aggregate", "<answer>Paris</answer>", input=("Paris", "paris, France", "Lyon"))
    assert text.output == "Paris"


async def test_backend_errors_propagate_for_the_interpreter_to_blame_the_node():
    model = ScriptedChatModel([], fail_every=1)
    with pytest.raises(RuntimeError, match="injected failure"):
        await make("Custom", model).arun(OperatorCall(task=MATH, input=None))


# -- operators that run code (real sandbox) --------------------------------------------------------------
@pytest.fixture
def sandbox():
    module = pytest.importorskip("flowsteer.sandbox")
    return module.Sandbox()


async def test_programmer_runs_solve_in_the_sandbox(sandbox):
    result, _ = await run("Programmer", "<code>\ndef solve():\n    return 3 + 4\n</code>", sandbox=sandbox)
    assert result.ok and result.output == "7" and "def solve" in result.data["code"]
    assert result.data["attempts"] == 1


async def test_programmer_feeds_the_error_back_and_retries(sandbox):
    replies = ["<code>def solve():\n    return 1 / 0</code>", "```python\ndef solve():\n    return 7\n```"]
    result, model = await run("Programmer", replies, sandbox=sandbox)
    assert result.output == "7" and result.data["attempts"] == 2
    assert "ZeroDivisionError" in user_text(model, 1) and "1 / 0" in user_text(model, 1)


async def test_programmer_attempts_are_bounded(sandbox):
    replies = ["<code>raise ValueError('nope')</code>"] * 3
    result, model = await run("Programmer", replies, params={"attempts": 3}, sandbox=sandbox)
    assert result.error and "3 attempt" in result.error and "ValueError" in result.error
    assert len(model.calls) == 3
    no_code, model = await run("Programmer", ["no code here", "still none"], sandbox=sandbox)
    assert no_code.error and len(model.calls) == 2


async def test_programmer_calls_a_lone_uncalled_function_and_reports_its_value(sandbox):
    program = "<code>def total_clips():\n    april = 48\n    return april + april // 2\n</code>"
    result, _ = await run("Programmer", program, sandbox=sandbox)
    assert result.ok and result.output == "72" and result.data["called"] == "total_clips"
    # a program that already prints its answer is left alone, helper function or not
    printed, _ = await run("Programmer", "<code>def helper():\n    return 1\nprint(41 + 1)</code>", sandbox=sandbox)
    assert printed.output == "42" and "called" not in printed.data


def test_lone_function_needs_one_uncalled_function_without_required_arguments():
    from flowsteer.operators.code import lone_function

    assert lone_function("def f():\n    return 1") == "f"
    assert lone_function("def f(x=2):\n    return x") == "f"
    assert lone_function("def f(x):\n    return x") is None  # needs an argument we do not have
    assert lone_function("def f():\n    return 1\ndef g():\n    return 2") is None  # which one?
    assert lone_function("def f():\n    return 1\nf()") is None  # already called
    assert lone_function("def f(:") is None


async def test_failed_programmer_on_math_answers_empty_with_the_failure(sandbox):
    replies = ["<code>def solve():\n    return 1 / 0</code>"] * 2
    result, _ = await run("Programmer", replies, sandbox=sandbox)
    assert result.output == "" and "ZeroDivisionError" in result.error
    assert result.data["code"].startswith("def solve")  # the source stays in the data, not the answer


async def test_programmer_code_task_returns_code_defining_entry_point(sandbox):
    good, _ = await run("Programmer", "<code>def add(a, b):\n    return a + b</code>", task=CODE, sandbox=sandbox)
    assert good.ok and good.output == "def add(a, b):\n    return a + b"
    replies = ["<code>def plus(a, b):\n    return a + b</code>", "<code>def add(a, b):\n    return a + b</code>"]
    retried, model = await run("Programmer", replies, task=CODE, sandbox=sandbox)
    assert retried.ok and "does not define add" in user_text(model, 1)


async def test_test_runs_public_tests_only(sandbox):
    # The hidden test (add(2, 2) == 5) would fail: a pass proves Test never saw it.
    good, _ = await run("Test", [], task=CODE, input="```python\ndef add(a, b):\n    return a + b\n```",
                        sandbox=sandbox)
    assert good.verdict is True and good.output == "def add(a, b):\n    return a + b"
    assert good.data["mode"] == "public_tests"
    bad, _ = await run("Test", [], task=CODE, input="def add(a, b):\n    return a - b", sandbox=sandbox)
    assert bad.verdict is False and "AssertionError" in bad.feedback


async def test_test_smoke_tests_without_public_tests(sandbox):
    task = Task("Write add(a, b).", kind="code", entry_point="add")
    ok, _ = await run("Test", [], task=task, input="def add(a, b):\n    return a + b", sandbox=sandbox)
    assert ok.verdict is True and ok.data["mode"] == "smoke"
    missing, _ = await run("Test", [], task=task, input="def plus(a, b):\n    return a + b", sandbox=sandbox)
    assert missing.verdict is False and "add" in missing.feedback
    nothing, _ = await run("Test", [], task=task, input="I could not do it.", sandbox=sandbox)
    assert nothing.verdict is False


async def test_test_on_a_math_answer_reports_a_usage_error_value():
    result, _ = await run("Test", [], input="7")
    assert result.error and result.verdict is None and result.output == "7"


# -- OperatorRunnable ------------------------------------------------------------------------------------
class _Recorder(BaseCallbackHandler):
    """Collects (kind, name, run_id, parent_run_id) for chain and chat-model starts."""

    def __init__(self):
        self.events = []

    def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, **kwargs):
        self.events.append(("chain", kwargs.get("name"), run_id, parent_run_id))

    def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None, **kwargs):
        self.events.append(("chat_model", None, run_id, parent_run_id))


def _runnable(replies):
    model = ScriptedChatModel(replies, default="<answer>7</answer>")
    return make("AnswerGenerate", model).as_runnable(), model


def test_runnable_invoke_nests_the_model_call_under_the_operator_run():
    runnable, _ = _runnable(["<answer>7</answer>"])
    handler = _Recorder()
    result = runnable.invoke(OperatorCall(task=MATH, input=None), config={"callbacks": [handler]})
    assert result.output == "7"
    chains = [e for e in handler.events if e[0] == "chain"]
    models = [e for e in handler.events if e[0] == "chat_model"]
    assert chains[0][1] == "AnswerGenerate" and len(models) == 1
    assert models[0][3] == chains[0][2]  # the chat model's parent is the operator's run


async def test_runnable_ainvoke_and_batch():
    runnable, model = _runnable([])
    calls = [OperatorCall(task=MATH, input=None, prompt=f"variant {i}") for i in range(3)]
    assert (await runnable.ainvoke(calls[0])).output == "7"
    assert [r.output for r in await runnable.abatch(calls)] == ["7"] * 3
    assert [r.output for r in runnable.batch(calls)] == ["7"] * 3  # sync batch from inside a running loop
    assert len(model.calls) == 7


class _Lifecycle(BaseCallbackHandler):
    """Collects chain start/end/error events as (event, name or None, run_id, parent_run_id)."""

    def __init__(self):
        self.events = []

    def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, **kwargs):
        self.events.append(("start", kwargs.get("name"), run_id, parent_run_id))

    def on_chain_end(self, outputs, *, run_id, parent_run_id=None, **kwargs):
        self.events.append(("end", None, run_id, parent_run_id))

    def on_chain_error(self, error, *, run_id, parent_run_id=None, **kwargs):
        self.events.append(("error", type(error).__name__, run_id, parent_run_id))

    def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None, **kwargs):
        self.events.append(("chat_model", None, run_id, parent_run_id))


async def test_runnable_ainvoke_is_one_chain_run_named_by_config_with_the_model_call_inside():
    import uuid

    runnable, _ = _runnable([])
    handler, run_id = _Lifecycle(), uuid.uuid4()
    config = {"callbacks": [handler], "run_name": "AnswerGenerate node_3", "run_id": run_id}
    assert (await runnable.ainvoke(OperatorCall(task=MATH, input=None), config)).output == "7"
    assert [e[0] for e in handler.events] == ["start", "chat_model", "end"]
    start, model, end = handler.events
    assert start[1] == "AnswerGenerate node_3" and start[2] == run_id and end[2] == run_id
    assert model[3] == run_id  # nested under the operator's run
    assert "run_id" in config  # the caller's config is not consumed


async def test_runnable_ainvoke_reports_a_failing_model_as_a_chain_error_and_raises():
    model = ScriptedChatModel([], default="<answer>7</answer>", fail_every=1)
    runnable = make("AnswerGenerate", model).as_runnable()
    handler = _Lifecycle()
    with pytest.raises(RuntimeError, match="injected failure"):
        await runnable.ainvoke(OperatorCall(task=MATH, input=None), {"callbacks": [handler]})
    assert [e[0] for e in handler.events] == ["start", "chat_model", "error"]
    assert handler.events[-1][1] == "RuntimeError" and handler.events[-1][2] == handler.events[0][2]


def test_runnable_rejects_other_inputs_with_a_fix():
    from flowsteer.errors import UserError

    runnable, _ = _runnable([])
    with pytest.raises(UserError, match="OperatorCall"):
        runnable.invoke("What is 3 + 4?")


# -- user registration -------------------------------------------------------------------------------------
def _fresh_registry():
    return default_registry().copy()


def _interpreter(registry, model):
    from flowsteer.workflow.interpreter import Interpreter

    return Interpreter(model, sandbox=NoSandbox(), registry=registry)


def test_register_a_class_makes_it_valid_and_runnable():
    from flowsteer.operators import Operator, register_operator
    from flowsteer.workflow.dsl import parse
    from flowsteer.workflow.validation import validate

    registry = _fresh_registry()

    @register_operator(role=Role.CHECKING, registry=registry)
    class LengthCheck(Operator):
        """Fails answers longer than five characters."""

        async def arun(self, call, config=None):
            ok = len(call.input or "") <= 5
            return OperatorResult(output=call.input, verdict=ok, feedback="ok" if ok else "too long")

    assert registry.get("LengthCheck").description == "Fails answers longer than five characters."
    workflow = parse("AnswerGenerate -> LengthCheck ? Revise : done", registry)
    assert validate(workflow, registry) == []
    model = ScriptedChatModel(["<answer>seven apples in total</answer>", "<solution>7</solution>"])
    result = _interpreter(registry, model).run(workflow, MATH)
    assert result.answer == "7" and [t.operator for t in result.trace] == ["AnswerGenerate", "LengthCheck", "Revise"]
    assert "too long" in model.calls[1][-1].content
    assert "LengthCheck" not in default_registry()


def test_register_functions_sync_async_and_with_context():
    from flowsteer.operators import register_operator
    from flowsteer.workflow.dsl import parse

    registry = _fresh_registry()

    @register_operator(registry=registry, description="Doubles the previous number.")
    def double_it(call):
        return str(2 * int(call.input))

    @register_operator(name="AskTwice", registry=registry, description="Asks the executor model directly.")
    async def ask(call, context):
        reply = await context.model.ainvoke(f"{call.prompt}: {call.input}")
        return OperatorResult(output=reply.content.upper())

    assert "DoubleIt" in registry and registry.get("DoubleIt").role is Role.SOLVING
    model = ScriptedChatModel(["<answer>7</answer>", "fourteen"])
    workflow = parse("AnswerGenerate -> DoubleIt -> AskTwice", registry)
    result = _interpreter(registry, model).run(workflow, MATH)
    assert [t.result.output for t in result.trace] == ["7", "14", "FOURTEEN"]


def test_register_a_langchain_runnable():
    from langchain_core.runnables import RunnableLambda

    from flowsteer.operators import register_operator
    from flowsteer.workflow.dsl import parse

    registry = _fresh_registry()
    chain = RunnableLambda(lambda d: {"output": d["input"], "verdict": d["input"] == "7", "feedback": "checked"})
    register_operator(chain, name="SevenCheck", role="checking", description="Passes only 7.", registry=registry)
    spec = registry.get("SevenCheck")
    assert spec.is_checker and "user" in spec.tags
    model = ScriptedChatModel(["<answer>8</answer>", "<solution>7</solution>", "<answer>7</answer>"])
    workflow = parse("AnswerGenerate -> (SevenCheck -> Revise) * 3", registry)
    result = _interpreter(registry, model).run(workflow, MATH)
    assert result.answer == "7"
    checks = [t.result.verdict for t in result.trace if t.operator == "SevenCheck"]
    assert checks == [False, True]  # the loop left after the second check passed


def test_registration_mistakes_raise_user_errors():
    from langchain_core.runnables import RunnableLambda

    from flowsteer.errors import UserError
    from flowsteer.operators import register_operator

    registry = _fresh_registry()
    with pytest.raises(UserError, match="description"):
        register_operator(lambda call: "x", name="NoDoc", registry=registry)
    with pytest.raises(UserError, match="role"):
        register_operator(lambda call: "x", name="BadRole", role="judging", description="d", registry=registry)
    with pytest.raises(UserError, match="name="):
        register_operator(RunnableLambda(lambda d: "x"), description="d", registry=registry)
    with pytest.raises(UserError, match="already registered"):
        register_operator(lambda call: "x", name="Plan", description="d", registry=registry)
    register_operator(lambda call: "x", name="Plan", description="mine", registry=registry, replace_existing=True)
    assert registry.get("Plan").description == "mine"


async def test_function_returning_garbage_is_an_error_value():
    from flowsteer.operators.custom import FunctionOperator

    op = FunctionOperator(OperatorContext(model=ScriptedChatModel([]), sandbox=NoSandbox()), lambda c: 42, "Bad")
    result = await op.arun(OperatorCall(task=MATH, input="7"))
    assert result.error and "int" in result.error and result.output == "7"


def test_register_into_the_default_registry():
    from flowsteer.operators import register_operator

    try:
        @register_operator(name="ZzTempOp", description="temporary")
        def temp(call):
            return "x"

        assert "ZzTempOp" in default_registry()
    finally:
        if "ZzTempOp" in default_registry():
            default_registry().unregister("ZzTempOp")
