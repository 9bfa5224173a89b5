"""The method vocabulary, torch-free: the one list the library, the API, the CLIs and the client share.

``lelp.method.targets`` builds each method's targets (numpy, torch); this module only names them, so
the API process and ``lelp jobs submit --help`` can list them without importing either.
"""

from __future__ import annotations

from enum import StrEnum

from lelp.errors import ConfigError


class Method(StrEnum):
    """The distillation methods and controls one switch chooses between."""

    CE = "ce"
    KD = "kd"
    FITNET = "fitnet"
    LELP = "lelp"
    RANDOM_SUBCLASS = "random_subclass"
    UNIFORM_SUBCLASS = "uniform_subclass"
    KMEANS_SUBCLASS = "kmeans_subclass"


SUBCLASS_METHODS = frozenset(
    {Method.LELP, Method.RANDOM_SUBCLASS, Method.UNIFORM_SUBCLASS, Method.KMEANS_SUBCLASS}
)
# "auto" trains these and keeps the best on a held-out split.
AUTO_METHODS = (Method.KD, Method.LELP, Method.RANDOM_SUBCLASS)
AUTO = "auto"
DEFAULT_METHOD = AUTO  # the default of the library, the API, both CLIs and the client
# What a user may ask for: every method, or "auto".
METHOD_CHOICES: tuple[str, ...] = (AUTO, *(m.value for m in Method))


def parse_method(method: str | Method) -> Method:
    """The ``Method`` named by ``method``, or a ``ConfigError`` that lists the choices."""
    try:
        return Method(method)
    except ValueError:
        choices = ", ".join(m.value for m in Method)
        raise ConfigError(f"unknown method {method!r}; choose one of: {choices}", param="method") from None
