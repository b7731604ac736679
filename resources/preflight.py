"""The run-start check: every op config of a run validated before anything is provisioned.

Dagster checks a run config's shape (names, types, enum choices) at launch but builds an op's pydantic
config (bounds, patterns, validators) only when that op's step starts, so a bad value in the third
step would surface after a cluster had been created and trained on. The cluster resource runs this
check when the run starts instead: each op's config is built from the run config, and every problem
of every op is reported at once, named ``ops.<op>.config.<field>``, before any cluster exists.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dagster as dg
from pydantic import BaseModel, ValidationError

from discord_ml_platform.spec.errors import validation_problems

ConfigProblem = tuple[str, str]
"""``(path in the run config, problem)``, e.g. ``("ops.ad_relevance_model.config.epochs", "must be >= 1 (got 0)")``."""


class RunConfigProblems(dg.Failure):
    """A run's config is invalid; nothing was provisioned. One line per problem, each naming op and field."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  {path}: {message}" for path, message in self.problems)
        super().__init__(description=f"invalid run config, nothing was provisioned:\n{lines}")


class RunConfigPreflight:
    """Validates the op and resource configs of a run config against their pydantic classes.

    Args:
        models: Op name -> its ``dg.Config`` class (see :func:`op_config_models`).
        resources: Resource key -> its ``ConfigurableResource`` class, for the resources whose
            config a run may set (the cluster resource checks its own shape against the platform).
    """

    def __init__(
        self, models: Mapping[str, type[BaseModel]], resources: Mapping[str, type[BaseModel]] | None = None
    ) -> None:
        self.models = dict(models)
        self.resources = dict(resources or {})

    def problems(self, run_config: Mapping[str, Any] | None) -> list[ConfigProblem]:
        """``("ops.<op>.config.<field>", problem)`` and ``("resources.<key>.config.<field>", problem)``
        for every invalid value in ``run_config``."""
        found: list[ConfigProblem] = []
        for section, models in (("ops", self.models), ("resources", self.resources)):
            entries = (run_config or {}).get(section) or {}
            for name, model in models.items():
                entry = entries.get(name) or {}
                config = entry.get("config") if isinstance(entry, Mapping) else None
                try:
                    model(**(config or {}))
                except ValidationError as err:
                    found += [
                        (f"{section}.{name}.config.{p.field}".rstrip("."), p.message) for p in validation_problems(err)
                    ]
        return found


def resource_problems(resource: str, problems: Iterable[tuple[str, str]]) -> list[ConfigProblem]:
    """``("resources.<resource>.config.<field>", problem)`` for each ``(field, problem)``."""
    return [(f"resources.{resource}.config.{field}".rstrip("."), message) for field, message in problems]


def config_model(op: dg.OpDefinition) -> type[dg.Config] | None:
    """The ``dg.Config`` class of an op's ``config`` parameter, if it has one."""
    compute = getattr(op.compute_fn, "decorated_fn", None)
    if compute is None:
        return None
    parameter = inspect.signature(compute).parameters.get("config")
    if parameter is None:
        return None
    annotation = parameter.annotation
    if isinstance(annotation, str):  # a module with postponed annotations
        annotation = typing.get_type_hints(compute).get("config")
    return annotation if isinstance(annotation, type) and issubclass(annotation, dg.Config) else None


def op_config_models(
    definitions: Iterable[dg.AssetsDefinition | dg.AssetChecksDefinition],
) -> dict[str, type[dg.Config]]:
    """Op name -> config class of every op among ``definitions`` that takes a pydantic config."""
    found: dict[str, type[dg.Config]] = {}
    for definition in definitions:
        model = config_model(definition.op)
        if model is not None:
            found[definition.op.name] = model
    return found


__all__ = [
    "ConfigProblem",
    "RunConfigPreflight",
    "RunConfigProblems",
    "config_model",
    "op_config_models",
    "resource_problems",
]
