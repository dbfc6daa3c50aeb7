"""Every config field is read by the code of its command: a field nothing reads is a setting that silently does
nothing (as ``mix.ray.num_gpus`` once did).

A static check over the source. Each config kind has a scope (the modules that run it, outside ``spt/config``);
a field counts as read when a module in its kind's scope accesses an attribute of its name
(``config.ray.py_executable``, ``limits.max_chars``) or uses its name as a string (``engine["dtype"]`` after
``model_dump()``, ``getattr``). It cannot tell apart two fields of one name in one scope
(``train.ray.num_gpus`` passes because ``sweeps/run.py`` reads ``sweep.resources.num_gpus``), so it errs
towards passing; it still catches a name that no code of the command mentions.
"""

from __future__ import annotations

import ast
import typing

from pydantic import BaseModel

from spt.config import KINDS
from tests.conftest import REPO

#: The modules (files or folders) that run each config kind.
SCOPES = {
    "corpora": ["pipelines/corpora.py", "pipelines/hf_datasets.py", "cli/data.py"],
    "tokenizer": ["pipelines/tokenizer.py", "cli/data.py"],
    "rephrase": ["pipelines/rephrase", "pipelines/engine.py", "pipelines/hf_datasets.py", "cli/rephrase.py"],
    "styles": ["pipelines/rephrase"],
    "mix": ["pipelines/mix", "pipelines/hf_datasets.py", "cli/mix.py"],
    "train": ["training", "spt/presets.py", "cli/train.py"],
    "finetune": ["training", "spt/presets.py", "cli/train.py"],
    "interpolate": ["training", "spt/presets.py", "cli/train.py"],
    "sweep": ["sweeps", "cli/sweep.py"],
}

#: Fields read without their name in the scope's code, and why. Each entry is a claim to check by hand.
READ_GENERICALLY = {
    "kind": "selects the model in spt.config.loader.validate",
    "rephrase.styles.library": "read by spt.config.rephrase.resolve_styles, which the runner calls",
    "rephrase.styles.inline": "read by spt.config.rephrase.resolve_styles, which the runner calls",
    "description": "style descriptions are for people reading the library; manifests record them (model_dump)",
    "mix.global_batch_size": "read by MixConfig's validator: total_tokens must fill one batch",
}


def field_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()):
    """Every field of a model and of the models inside it, as name paths."""
    for name, field in model.model_fields.items():
        yield prefix + (name,)
        for inner in _types(field.annotation):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                yield from field_paths(inner, prefix + (name,))


def _types(annotation) -> list:
    return [annotation] + [t for arg in typing.get_args(annotation) for t in _types(arg)]


def names_in(scope: list[str]) -> set[str]:
    """Attribute names and string constants in the scope's modules (not keyword names: ``num_gpus=0`` passes a
    value, it reads no field)."""
    found: set[str] = set()
    for item in scope:
        path = REPO / item
        for module in [path] if path.is_file() else sorted(path.rglob("*.py")):
            for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Attribute):
                    found.add(node.attr)
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    found.add(node.value)
    return found


def unread_fields() -> list[str]:
    unread = []
    for kind, model in KINDS.items():
        names = names_in(SCOPES[kind])
        for path in field_paths(model):
            dotted = ".".join((kind, *path))
            allowed = path[-1] in READ_GENERICALLY or any(dotted.startswith(k) for k in READ_GENERICALLY if "." in k)
            if path[-1] not in names and not allowed:
                unread.append(dotted)
    return sorted(set(unread))


def test_every_kind_has_a_scope_outside_the_schema():
    assert sorted(SCOPES) == sorted(KINDS)
    assert not any(item.startswith("spt/config") for scope in SCOPES.values() for item in scope)


def test_every_config_field_is_read_by_its_command():
    assert unread_fields() == []


def test_the_check_flags_a_field_its_command_does_not_read():
    # The check must be able to fail: fields of one command are not read by another command's code.
    assert "heldout_fraction" in names_in(SCOPES["corpora"]) and "max_epochs" not in names_in(SCOPES["corpora"])
    assert "colour_of_the_bikeshed" not in names_in(SCOPES["mix"])
    # The field this test was written for: a `num_gpus` under mix.ray would be flagged (tokenizing uses no GPU).
    assert "num_gpus" not in names_in(SCOPES["mix"])
