"""Styles to prompts: the weighted style draw per document, and prompt token ids that fit the context.

Prompts are built here as token ids (not left to the engine), so the count of prompt tokens is exact, a prompt
that would overflow ``max_model_len`` is cut and counted before it reaches vLLM, and the same ids can be fed to
raw ``vllm.LLM.generate`` by the benchmark. The chat template is the model's own Jinja template, rendered the
way transformers renders it, so the train and generate environments build identical prompts.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from pipelines.rephrase.chunking import cut_to_tokens, token_starts
from spt.config.rephrase import StyleSpec
from spt.errors import InputError

_TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"]


def draw_styles(seed: int, source_id: str, weights: dict[str, float], count: int) -> list[str]:
    """``count`` distinct styles for a document, drawn by weight without replacement (sorted by name).

    Efraimidis-Spirakis keys ``u ** (1 / w)`` with ``u`` from a hash of (seed, id, style): each document's draw
    is independent of the others and of the order styles are listed in.
    """
    keys = {}
    for name, weight in weights.items():
        if weight <= 0:
            continue
        digest = hashlib.sha256(f"rephrase-style:{seed}:{source_id}:{name}".encode()).digest()
        u = (int.from_bytes(digest[:8], "big") + 0.5) / 2**64
        keys[name] = math.log(u) / weight  # log of u**(1/w): same order, no underflow
    return sorted(sorted(keys, key=lambda n: keys[n], reverse=True)[:count])


def row_id(source_id: str, chunk: int, style: str) -> str:
    """The output row's id: a hash of its key (source_id, chunk, style), stable across reruns."""
    return "rph-" + hashlib.sha256(f"{source_id}\x00{chunk}\x00{style}".encode()).hexdigest()[:24]


def tokenizer_folder(model: str) -> Path:
    """The folder with the model's tokenizer files: the model folder itself, or a hub download of just them."""
    path = Path(model)
    if path.is_dir():
        if not (path / "tokenizer.json").exists():
            raise InputError(f"engine.model={model!r}: no tokenizer.json in the model folder")
        return path
    if model.startswith((".", "/", "~")):
        raise InputError(f"engine.model={model!r}: folder not found (run scripts/setup.sh model for the local SmolLM2)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, allow_patterns=_TOKENIZER_FILES))
    except Exception as exc:  # network, auth, unknown repo: all bad input from the user's side
        raise InputError(f"engine.model={model!r}: cannot fetch its tokenizer from the hub ({exc})") from None


class PromptBuilder:
    """Renders a style's prompt for a chunk and returns token ids within the context budget."""

    def __init__(self, model: str, use_chat_template: bool, max_model_len: int):
        from tokenizers import Tokenizer

        folder = tokenizer_folder(model)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.max_model_len = max_model_len
        self.use_chat_template = use_chat_template
        self._template = _chat_template(folder) if use_chat_template else None
        if use_chat_template and self._template is None:
            raise InputError(f"engine.model={model!r}: no chat template; set engine.use_chat_template=false")

    def encode(self, text: str) -> tuple[list[int], list[int]]:
        """Token ids of plain text and the character offset where each starts."""
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        return encoding.ids, token_starts(encoding.offsets)

    def render(self, style: StyleSpec, text: str) -> str:
        user = style.template.format(text=text, num_words=len(text.split()))
        if self._template is None:
            return user
        messages = ([{"role": "system", "content": style.system}] if style.system else []) + [
            {"role": "user", "content": user}
        ]
        return self._template(messages)

    def prompt_ids(self, style: StyleSpec, text: str, max_input_tokens: int, max_output_tokens: int):
        """Prompt token ids for ``text`` in ``style``, cutting ``text`` until prompt + output fit the context.

        Returns:
            (ids, truncated) or (None, True) when not even a few tokens of text fit.
        """
        ids, truncated, _ = self.prompt(style, text, max_input_tokens, max_output_tokens)
        return ids, truncated

    def prompt(self, style: StyleSpec, text: str, max_input_tokens: int, max_output_tokens: int):
        """As :meth:`prompt_ids`, plus the tokens of the part of ``text`` the prompt holds.

        Returns:
            (ids, truncated, text tokens) or (None, True, 0) when not even a few tokens of text fit.
        """
        ids, starts = self.encode(text)
        truncated = False
        if len(ids) > max_input_tokens:
            text, truncated = cut_to_tokens(text, starts, max_input_tokens), True
            ids, starts = self.encode(text)
        budget = self.max_model_len - max_output_tokens
        for _ in range(8):
            prompt = self.tokenizer.encode(self.render(style, text), add_special_tokens=not self.use_chat_template).ids
            excess = len(prompt) - budget
            if excess <= 0:
                return prompt, truncated, len(ids)
            keep = len(ids) - excess - 2
            if keep < 8:
                return None, True, 0
            text, truncated = cut_to_tokens(text, starts, keep), True
            ids, starts = self.encode(text)
        return None, True, 0


def _chat_template(folder: Path):
    """The model's chat template as a render function, or None when it has none."""
    source = None
    if (folder / "chat_template.jinja").exists():
        source = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    settings = {}
    if (folder / "tokenizer_config.json").exists():
        settings = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    if source is None:
        source = settings.get("chat_template")
        if isinstance(source, list):  # named templates: use the default one
            source = next((t["template"] for t in source if t.get("name") == "default"), None)
    if not source:
        return None
    template = _compile(source)

    def token(name: str) -> str:
        value = settings.get(name)
        return value.get("content", "") if isinstance(value, dict) else (value or "")

    specials = {name: token(name) for name in ("bos_token", "eos_token", "pad_token", "unk_token")}
    return lambda messages: template.render(messages=messages, add_generation_prompt=True, **specials)


@lru_cache(maxsize=8)
def _compile(source: str):
    # The same Jinja settings transformers uses for chat templates.
    from jinja2 import ext
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[ext.loopcontrols])
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)
