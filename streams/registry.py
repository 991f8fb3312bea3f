"""One registry per family of variants (sources, detectors), keyed by the config's ``type``.

Built-in variants register through the same ``register`` call an extension would use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

T = TypeVar("T")


class StrictModel(BaseModel):
    """Base for every streams config model: unknown keys are an error, never ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class UnknownVariantError(KeyError):
    """Raised when a config names a ``type`` that nobody registered."""


class Registry(Generic[T]):
    """A registry of variants: builds objects from configs whose ``type`` names a registered one."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._configs: dict[str, type[BaseModel]] = {}
        self._factories: dict[str, Callable[[Any], T]] = {}
        self._adapter: TypeAdapter | None = None

    def register(self, config_cls: type[BaseModel]) -> Callable[[Callable[[Any], T]], Callable]:
        """Return a decorator registering ``factory(config) -> T`` for ``config_cls``."""
        type_name = config_cls.model_fields["type"].default
        if not isinstance(type_name, str):
            raise TypeError(f"{config_cls.__name__}.type needs a Literal default string")

        def decorator(factory: Callable[[Any], T]) -> Callable[[Any], T]:
            self._configs[type_name] = config_cls
            self._factories[type_name] = factory
            self._adapter = None
            return factory

        return decorator

    @property
    def types(self) -> list[str]:
        """Return the registered ``type`` names."""
        return sorted(self._configs)

    def config_union(self) -> Any:
        """Return the discriminated-union annotation over every registered config class."""
        classes = tuple(self._configs.values())
        if len(classes) == 1:
            return classes[0]
        return Annotated[Union[classes], Field(discriminator="type")]  # noqa: UP007

    def parse(self, data: Any) -> BaseModel:
        """Return the validated config for ``data`` (a dict or an already-built config)."""
        if isinstance(data, BaseModel) and type(data) in self._configs.values():
            return data
        if self._adapter is None:
            self._adapter = TypeAdapter(self.config_union())
        return self._adapter.validate_python(data)

    def create(self, config: Any) -> T:
        """Return a new object for ``config`` (validated first)."""
        cfg = self.parse(config)
        type_name = cfg.type  # type: ignore[attr-defined]
        try:
            factory = self._factories[type_name]
        except KeyError as exc:
            raise UnknownVariantError(
                f"no {self.family} registered as type {type_name!r}; known: {self.types}"
            ) from exc
        return factory(cfg)
