"""The method vocabulary, torch-free: the one list the library, the API, the CLIs and the client share.

``lelp.method.targets`` builds each method's targets (numpy, torch); this module only names them, so
the API process and ``lelp jobs submit --help`` can list them without importing either.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class MethodInfo:
    """What the rest of the system knows of a method without building its targets."""

    title: str  # how the report names it in a sentence
    subclasses: bool = False  # splits each class into S sub-classes (S*C outputs, column c*S+s)
    # the split is fitted on the teacher's embedding (needs S + C <= its width and S + 1 rows per class)
    from_embedding: bool = False
    auto_rank: int | None = None  # "auto" trains it; ties on validation go to the lower rank (the simpler)
    words: str = ""  # its short name in a progress line ("training student 1/3 (plain KD)"); title when empty


# The methods table: every fact about a method that another module needs lives in its entry.
METHODS: dict[Method, MethodInfo] = {
    Method.CE: MethodInfo("hard-label training", words="hard labels"),
    Method.KD: MethodInfo("plain KD", auto_rank=0),
    Method.FITNET: MethodInfo("FitNet"),
    Method.LELP: MethodInfo("LELP", subclasses=True, from_embedding=True, auto_rank=1),
    Method.RANDOM_SUBCLASS: MethodInfo("the random-subclass control", subclasses=True, from_embedding=True,
                                       auto_rank=2, words="random sub-classes"),
    Method.UNIFORM_SUBCLASS: MethodInfo("the uniform-subclass control", subclasses=True, words="uniform sub-classes"),
    Method.KMEANS_SUBCLASS: MethodInfo("k-means sub-classes", subclasses=True, from_embedding=True),
}
SUBCLASS_METHODS = frozenset(m for m, info in METHODS.items() if info.subclasses)
# Methods whose sub-classes come from the teacher's embedding (the API's submit checks read these).
PROJECTED_METHODS = frozenset(m for m, info in METHODS.items() if info.from_embedding)
# "auto" trains these and keeps the best on a held-out split; ties go to the earlier (simpler) one.
AUTO_METHODS = tuple(sorted((m for m, info in METHODS.items() if info.auto_rank is not None),
                            key=lambda m: METHODS[m].auto_rank))
AUTO_METHOD_RANK = {m.value: METHODS[m].auto_rank for m in AUTO_METHODS}
DEFAULT_SUBCLASSES = 2  # S of a sub-class method when the job does not say (the library and the API)
AUTO = "auto"
DEFAULT_METHOD = AUTO  # the default of the library, the API, both CLIs and the client
# What a user may ask for: every method, or "auto".
METHOD_CHOICES: tuple[str, ...] = (AUTO, *(m.value for m in Method))


def method_words(method: str) -> str:
    """A method's short name for progress lines; the raw string for one the table does not know."""
    try:
        info = METHODS[Method(method)]
    except ValueError:
        return method
    return info.words or info.title


def method_title(method: str) -> str:
    """How the report names ``method`` in a sentence (the name itself when unknown)."""
    try:
        return METHODS[Method(method)].title
    except ValueError:
        return method


def parse_method(method: str | Method) -> Method:
    """The ``Method`` named by ``method``, or a ``ConfigError`` that lists the choices."""
    try:
        return Method(method)
    except ValueError:
        choices = ", ".join(m.value for m in Method)
        raise ConfigError(f"unknown method {method!r}; choose one of: {choices}", param="method") from None
