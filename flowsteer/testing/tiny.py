"""A tiny random causal LM and a tokenizer trained offline, for fast tests of model code.

Nothing is downloaded: the tokenizer is a byte-level BPE trained in ~0.05 s on a small built-in corpus
(plus any text you pass) and wrapped as a ``PreTrainedTokenizerFast`` with a ChatML chat template; the
model is a Llama or Qwen2 causal LM built from a config with random weights (hidden size 64, two
layers by default). The training code, the local chat model and the grammar constraint all test on
it. Needs the ``local`` extra (torch, transformers, tokenizers).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from flowsteer.errors import MissingExtraError

__all__ = ["CHATML_TEMPLATE", "SPECIAL_TOKENS", "build_tiny_tokenizer", "build_tiny_model", "save_tiny_model", "tiny_chat_model"]

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>")

# ChatML, the format of SmolLM2 and Qwen: the generation prompt opens an assistant turn.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = """
You are the Flow-Director. Design a workflow for the task, one action per turn.
<action>add</action><operator>Programmer</operator>
<action>add</action><structure>parallel</structure><operators>Programmer, Custom</operators>
<action>add</action><structure>conditional</structure><condition>Verify</condition><true>Revise</true><false>done</false>
<action>add</action><structure>loop</structure><operators>Review, Revise</operators><count>2</count>
<action>delete</action><target>node_3</target>
<action>modify</action><target>node_2</target><operator>AnswerGenerate</operator>
<action>set_prompt</action><target>node_1</target><prompt>Solve it step by step.</prompt>
<action>finish</action><answer>42</answer>
Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format
Decompose Test Review Aggregate Format Plan Custom
Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.
How many clips did Natalia sell altogether in April and May? The answer is 72.
def solve(): return 12 + 30
0 1 2 3 4 5 6 7 8 9 + - * / = ( ) [ ] { } < > , . ? ! : ; ' " \\n
"""


def _require(purpose: str) -> None:
    try:
        import tokenizers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise MissingExtraError("transformers", "local", purpose) from None


def build_tiny_tokenizer(extra_text: Iterable[str] = (), *, vocab_size: int = 512) -> Any:
    """A byte-level BPE tokenizer trained offline, as a ``PreTrainedTokenizerFast`` with a chat template.

    Byte-level, so any text round-trips; ``<|im_end|>`` is the end-of-sequence token and ``<pad>``
    the padding token (left padding, as generation needs).
    """
    _require("The tiny test tokenizer")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS, *extra_text], trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token="<|endoftext|>",
        padding_side="left",
    )
    wrapped.chat_template = CHATML_TEMPLATE
    return wrapped


def build_tiny_model(
    tokenizer: Any,
    *,
    arch: Literal["llama", "qwen2"] = "llama",
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
) -> Any:
    """A randomly initialised causal LM (fp32, eval mode) whose vocabulary matches ``tokenizer``."""
    _require("The tiny test model")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        # a wide initialisation so a random model's greedy outputs vary with the prompt
        initializer_range=0.5,
    )
    torch.manual_seed(seed)
    model: Any
    match arch:
        case "llama":
            model = LlamaForCausalLM(LlamaConfig(**common))
        case "qwen2":
            model = Qwen2ForCausalLM(Qwen2Config(**common))
        case _:
            raise ValueError(f"unknown tiny architecture {arch!r}; use 'llama' or 'qwen2'")
    model.eval()
    return model


def save_tiny_model(path: str | Path, *, seed: int = 0) -> Path:
    """Save a fresh tiny model and its tokenizer as a folder ``from_pretrained`` (and configs) load."""
    path = Path(path)
    tokenizer = build_tiny_tokenizer()
    build_tiny_model(tokenizer, seed=seed).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_chat_model(*, arch: Literal["llama", "qwen2"] = "llama", seed: int = 0, **kwargs: Any) -> Any:
    """A :class:`~flowsteer.models.local.LocalChatModel` over a fresh tiny model."""
    from flowsteer.models.local import LocalChatModel

    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer, arch=arch, seed=seed)
    return LocalChatModel(model=model, tokenizer=tokenizer, **kwargs)
