"""Command-line options declared once.

A training command's options are the fields of the dataclass it fills
(`reportgen.model.train_args`): `command_from` turns each field marked with `option(...)`
into a typer option (name, type, default and help from the field) and hands the command
one filled dataclass. Options that many commands share (`--seed`, `--template`, `--out`)
are the functions below, so each is declared here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import typer

A = TypeVar("A")

# The wording of options several commands share, where a field gives no help of its own.
SHARED_HELP = {
    "seed": "Random seed: the same seed, data and machine train the same model.",
    "template": "Only studies of this template.",
    "cache_dir": "Preprocessed-study cache.",
    "steps": "Optimiser steps.",
    "epochs": "Passes over the training studies.",
    "batch_size": "Studies per optimiser step.",
    "lr": "Peak learning rate.",
    "checkpoint_every": "Steps between checkpoints (resume from OUT/last).",
    "detector_steps": "Steps of the lesion detector's training.",
    "segmenter_steps": "Steps of the lesion outline's training.",
}


def seed_option(default: int = 0, help: str = SHARED_HELP["seed"]) -> Any:
    return typer.Option(default, "--seed", help=help)


def template_option(help: str = SHARED_HELP["template"], required: bool = False) -> Any:
    return typer.Option(... if required else None, "--template", help=help)


def out_option(help: str, default: Any = ...) -> Any:
    """`--out`: what is written there differs by command, so each says it."""
    return typer.Option(default, "--out", help=help)


def _typer_option(field: dataclasses.Field, annotation: Any) -> Any:
    help_text = field.metadata["option"] or SHARED_HELP.get(field.name, "")
    name = "--" + field.name.replace("_", "-")
    flag = field.metadata.get("flag") or (f"{name}/--no-{name[2:]}" if annotation is bool else name)
    if field.default is not dataclasses.MISSING:
        default = field.default
    elif field.default_factory is not dataclasses.MISSING:
        default = None  # typer's "not given"; the dataclass's factory fills it
    else:
        default = ...
    return typer.Option(default, flag, help=help_text or None)


def command_from(args_cls: type[A]) -> Callable[[Callable[[A], None]], Callable[..., None]]:
    """Decorate `body(args)`: the result is a typer command whose options are the
    option fields of `args_cls` (in field order), called with one `args_cls`. Fields not
    marked as options keep their dataclass defaults."""
    hints = typing.get_type_hints(args_cls)
    fields = [f for f in dataclasses.fields(args_cls) if "option" in f.metadata]  # type: ignore[arg-type]

    def decorate(body: Callable[[A], None]) -> Callable[..., None]:
        @functools.wraps(body)
        def command(**given: Any) -> None:
            for f in fields:
                if given[f.name] is None and f.default_factory is not dataclasses.MISSING:
                    given[f.name] = f.default_factory()
                elif typing.get_origin(hints[f.name]) is list:
                    given[f.name] = list(given[f.name])
            body(args_cls(**given))

        params = [
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=_typer_option(f, hints[f.name]),
                annotation=hints[f.name],
            )
            for f in fields
        ]
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {f.name: hints[f.name] for f in fields} | {"return": None}
        del command.__wrapped__  # typer reads the signature above, not body's
        return command

    return decorate
