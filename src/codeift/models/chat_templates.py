"""Chat templates of real models, made usable by TRL's assistant-only loss.

An instruct model is tuned and evaluated in the format it was trained with, so a model that ships
a template keeps it (`chat_template: keep`). TRL puts the loss on what `{% generation %}` ..
`{% endgeneration %}` encloses, which few shipped templates mark: the markers are added around
each assistant message's content and its end-of-turn token (TRL's own training variant when TRL
knows the template, else a rewrite of the one output expression that renders message content).
Any template assigned is checked on probe conversations before it is saved: it renders byte for
byte like the model's own, and its assistant mask covers exactly each assistant message's content
plus the end-of-turn token. A model without a template gets the study's template.
"""

from __future__ import annotations

import re
from typing import Any

from codeift.errors import TemplateError

# `{{ ... }}` output blocks and the message-content expression inside one (`message['content']`,
# `message["content"]` or `message.content`, whatever the loop variable is called).
OUTPUT_BLOCK = re.compile(r"\{\{(?P<left>-?)(?P<expr>.*?)(?P<right>-?)\}\}", re.S)
CONTENT = re.compile(r"(?P<var>[A-Za-z_]\w*)\s*(?:\[\s*(?P<q>['\"])content(?P=q)\s*\]|\.content)")
PROBES: list[list[dict[str, str]]] = [
    [
        {"role": "user", "content": "Reverse the list 1 2 3."},
        {"role": "assistant", "content": "3 2 1"},
        {"role": "user", "content": "And 4 5?"},
        {"role": "assistant", "content": "The answer is 5 4."},
    ],
    [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "content": "2 + 3 = 5\nThe answer is 5."},
    ],
]


def _split_concatenation(expression: str) -> list[str]:
    """The top-level `+` operands of a Jinja expression (strings and brackets kept whole)."""
    import jinja2

    parts, current, depth = [], [], 0
    for _, kind, value in jinja2.Environment().lex("{{" + expression + "}}"):
        if kind in ("variable_begin", "variable_end"):
            continue
        if kind == "operator" and value in "([{":
            depth += 1
        elif kind == "operator" and value in ")]}":
            depth -= 1
        if kind == "operator" and value == "+" and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(value)
    parts.append("".join(current).strip())
    return parts


def add_generation_markers(template: str, end_of_turn: str) -> str:
    """Wrap the assistant message's content and end-of-turn token in generation markers.

    The template must render every message through one `{{ a + message['content'] + b }}`
    expression (ChatML and most simple templates do); that expression becomes an if/else on the
    role whose assistant branch renders the same bytes with the markers inside.
    """
    blocks = [m for m in OUTPUT_BLOCK.finditer(template) if CONTENT.search(m["expr"])]
    if len(blocks) != 1:
        raise TemplateError(
            f"expected one {{{{ ... }}}} expression rendering message content, found {len(blocks)}"
        )
    block = blocks[0]
    parts = _split_concatenation(block["expr"])
    at = [i for i, part in enumerate(parts) if CONTENT.fullmatch(part)]
    if len(at) != 1:
        raise TemplateError(f"message content is not a `+` operand of {block.group(0)!r}")
    content = at[0]
    variable = CONTENT.fullmatch(parts[content])["var"]
    after = parts[content + 1 :]
    ends = [i for i, part in enumerate(after) if end_of_turn in part or part == "eos_token"]
    if not ends:
        raise TemplateError(f"the end-of-turn token {end_of_turn!r} does not follow the content")
    stop = content + 1 + ends[0] + 1

    def output(operands: list[str]) -> str:
        return "{{ " + " + ".join(operands) + " }}" if operands else ""

    # `+` switches off trim_blocks/lstrip_blocks for the new tags, so whitespace stays the
    # original's; the original's own `-` trims move onto the tags that now surround it.
    open_tag = "{%- " if block["left"] else "{%+ "
    close_tag = " -%}" if block["right"] else " +%}"
    marked = (
        f"{open_tag}if {variable}['role'] == 'assistant' %}}"
        + output(parts[:content])
        + "{% generation %}"
        + output(parts[content:stop])
        + "{% endgeneration %}"
        + output(parts[stop:])
        + "{% else %}{{ "
        + block["expr"].strip()
        + f" }}}}{{% endif{close_tag}"
    )
    return template[: block.start()] + marked + template[block.end() :]


def _render(tokenizer: Any, template: str, messages: list, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=generation_prompt
    )


def check_template(
    tokenizer: Any, template: str, end_of_turn: str, original: str | None = None
) -> None:
    """Raise TemplateError unless `template` masks exactly the assistant turns (and renders as
    `original` does, prompts with a generation prompt included)."""
    for messages in PROBES:
        if original is not None:
            cases = [(messages, False)] + [
                (messages[:i], True) for i, m in enumerate(messages) if m["role"] == "assistant"
            ]
            for prefix, prompt in cases:
                ours = _render(tokenizer, template, prefix, prompt)
                theirs = _render(tokenizer, original, prefix, prompt)
                if ours != theirs:
                    raise TemplateError(f"marked template renders {ours!r}, the model's {theirs!r}")
        encoded = tokenizer.apply_chat_template(
            messages,
            chat_template=template,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        spans, current = [], []
        for token, mask in zip(encoded["input_ids"], encoded["assistant_masks"], strict=True):
            if mask:
                current.append(token)
            elif current:
                spans.append(current)
                current = []
        if current:
            spans.append(current)
        # lstrip: SentencePiece decoders may prefix a span with the space its first piece carries
        found = [tokenizer.decode(span, clean_up_tokenization_spaces=False) for span in spans]
        found = [text.lstrip(" ") for text in found]
        wanted = [m["content"] + end_of_turn for m in messages if m["role"] == "assistant"]
        if found != wanted:
            raise TemplateError(f"assistant mask covers {found!r}, expected {wanted!r}")


def assign_chat_template(tokenizer: Any, mode: str, study_template: str) -> str:
    """Set the tokenizer's training template for `mode` (codeift | keep); say which it is."""
    own = tokenizer.chat_template
    if isinstance(own, dict):
        own = own.get("default")
    end_of_turn = tokenizer.eos_token
    if mode == "codeift" or not own:
        check_template(tokenizer, study_template, end_of_turn)
        tokenizer.chat_template = study_template
        return "codeift" if mode == "codeift" else "codeift (the model has no template)"
    from trl.chat_template_utils import get_training_chat_template

    candidates = [
        # TRL returns None when the template is already marked (and prefix-preserving)
        ("model's own, TRL's variant", lambda: get_training_chat_template(tokenizer) or own),
        ("model's own + generation markers", lambda: add_generation_markers(own, end_of_turn)),
    ]
    errors = []
    for how, make in candidates:
        try:
            template = make()
            check_template(tokenizer, template, end_of_turn, original=own)
        except ValueError as error:  # TemplateError, or TRL's "patching is not supported"
            errors.append(f"{how}: {error}")
            continue
        tokenizer.chat_template = template
        return how
    raise TemplateError(
        "the model's chat template cannot be used with assistant-only loss ("
        + "; ".join(errors)
        + "); set `chat_template: codeift` to use the study's template"
    )
