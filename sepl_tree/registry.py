"""What a plugin registers: strategies and pseudo-label readers, with typed parameters.

A strategy or reader is a plain function; its parameters are read from its signature (every
keyword parameter after the fixed positional ones, with its default) and their one-line help from
the numpydoc ``Parameters`` section of its docstring, so a plugin does not repeat itself.
"""

from __future__ import annotations

import glob
import inspect
import math
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sepl_tree.errors import SeplError, not_a_file

__all__ = ["PARAM_TYPES", "Param", "Range", "ReadContext", "Reader", "Share", "Strategy", "Tau", "coerce_params",
           "params_from_signature"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Range:
    """The values a numeric parameter may take, declared in its annotation::

        def my_rule(sample, share: Annotated[float, Range(0, 1)] = 0.5, tau: Annotated[float, Range(0, 1, low_open=True)] = 0.9):

    ``low``/``high`` are inclusive unless ``low_open``/``high_open``; ``None`` is unbounded.
    Floats must be finite in any case.

    >>> str(Range(0, 1)), str(Range(0, 1, low_open=True)), str(Range(low=0))
    ('[0, 1]', '(0, 1]', '[0, inf)')
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __str__(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        return f"{left}{low}, {high}{right}"

    def __contains__(self, value: float) -> bool:
        if value != value:  # NaN is in no range (every comparison with it is False)
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))


#: A parameter that is a share, in [0, 1]: ``t1: Share = 0.5``.
Share = typing.Annotated[float, Range(0.0, 1.0)]
#: The containment tree's threshold, in (0, 1]: ``tau: Tau = 0.9``.
Tau = typing.Annotated[float, Range(0.0, 1.0, low_open=True)]


@dataclass(frozen=True)
class Param:
    """One parameter of a strategy or reader: its default, its type, a line of help and, for a
    number, the :class:`Range` it must lie in."""

    name: str
    default: Any
    type: type
    help: str = ""
    range: Range | None = None

    def coerce(self, value: Any) -> Any:
        """Turn ``value`` (often a string from ``--param``) into this parameter's type and check
        it (``ValueError`` saying what is expected)."""
        value = self._coerce_type(value)
        if self.type in (int, float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError(f"expected a finite number{'' if self.range is None else f' in {self.range}'}, "
                                 f"got {value!r}")
            if self.range is not None and value not in self.range:
                raise ValueError(f"must be in {self.range}, got {value!r}")
        return value

    def _coerce_type(self, value: Any) -> Any:
        if isinstance(value, str) and self.type is not str:
            text = value.strip()
            if self.type is bool:
                if text.lower() in _TRUE:
                    return True
                if text.lower() in _FALSE:
                    return False
                raise ValueError(f"expected true or false, got {value!r}")
            if self.type is type(None):
                return value
            try:
                return self.type(text)
            except ValueError:
                raise ValueError(f"expected {self.type.__name__}, got {value!r}") from None
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if self.type is not type(None) and not isinstance(value, self.type):
            raise ValueError(f"expected {self.type.__name__}, got {value!r}")
        return value


def _docstring_help(func: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """First line of the docstring, and the description of each parameter its numpydoc
    ``Parameters`` section documents (its lines joined).

    >>> def rule(sample, t1=0.5):
    ...     '''Keep big masks.
    ...
    ...     Parameters
    ...     ----------
    ...     t1
    ...         The share a mask must exceed,
    ...         inside its class.
    ...     '''
    >>> _docstring_help(rule)
    ('Keep big masks.', {'t1': 'The share a mask must exceed, inside its class.'})
    """
    doc = inspect.getdoc(func) or ""
    summary = doc.strip().splitlines()[0].strip() if doc.strip() else ""
    lines: dict[str, list[str]] = {}
    match = re.search(r"^Parameters\n-+\n(.*?)(?:\n\n[A-Z][a-z]+\n-+\n|\Z)", doc, re.S | re.M)
    if match:
        current = None
        for line in match.group(1).splitlines():
            if line and not line[0].isspace():
                current = line.split(":")[0].strip()
                lines.setdefault(current, [])
            elif current and line.strip():
                lines[current].append(line.strip())
    return summary, {name: " ".join(text) for name, text in lines.items() if text}


def _name(func: Callable[..., Any]) -> str:
    """How messages name a strategy's or reader's function (a ``functools.partial`` has no name)."""
    return getattr(func, "__qualname__", None) or repr(func)


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    """``func``'s parameter annotations, resolved (string annotations, as ``from __future__ import
    annotations`` makes them, in the function's module), ``Annotated`` extras kept. One that
    does not resolve (a name imported only for type checkers) stays a string, the others resolved:
    the sample's may (it is not read), a tunable parameter's is refused (:func:`_declared`)."""
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:  # resolve them one by one
        pass
    namespace = getattr(getattr(func, "func", func), "__globals__", {})
    hints = {}
    for name, p in inspect.signature(func).parameters.items():
        hints[name] = p.annotation
        if isinstance(p.annotation, str):
            try:
                hints[name] = eval(p.annotation, dict(namespace))  # what typing does with a string annotation
            except Exception:
                pass
    return hints


def _range_of(hint: Any) -> Range | None:
    """The :class:`Range` an ``Annotated`` annotation declares."""
    return next((meta for meta in getattr(hint, "__metadata__", ()) if isinstance(meta, Range)), None)


#: The types a parameter may have (``--param`` gives strings, converted to these).
PARAM_TYPES = (bool, int, float, str)


def _unwrapped(hint: Any) -> tuple[Any, Range | None]:
    """An annotation without its ``Annotated`` wrapper, and the :class:`Range` that declared."""
    if typing.get_origin(hint) is typing.Annotated:
        return typing.get_args(hint)[0], _range_of(hint)
    return hint, None


def _plain_type(hint: Any) -> tuple[type | None, bool, Range | None]:
    """``(type, optional, range)`` of an annotation such as ``float``, ``Share``, ``int | None``
    or ``Share | None``; the type is ``None`` when it names none of :data:`PARAM_TYPES`."""
    hint, declared = _unwrapped(hint)
    args = typing.get_args(hint)
    optional = len(args) == 2 and type(None) in args  # T | None, Optional[T]
    if optional:
        hint, inner = _unwrapped(args[0] if args[1] is type(None) else args[1])
        declared = declared or inner
    return (hint if hint in PARAM_TYPES else None), optional, declared


def _declared(func: Callable[..., Any], p: inspect.Parameter, hint: Any, help: str) -> Param:
    """The :class:`Param` of ``p``: the type its annotation names, else its default's; a default
    of another type, or one that does not fit the annotation, is a ``TypeError`` naming it."""
    where = f"{_name(func)}: parameter {p.name!r}"
    if isinstance(hint, str):  # a range it declares (Share, Tau) would be lost without a word
        raise TypeError(f"{where}: its annotation {hint!r} does not resolve in the function's module (a name "
                        "imported inside a function, or only for type checkers?); import what it names at the "
                        "module's top level")
    kind, optional, declared = _plain_type(hint)
    if kind is None:
        if p.default is None:
            raise TypeError(f"{where}: a default of None needs an annotation saying the type, "
                            f"e.g. {p.name}: float | None = None")
        kind = type(p.default)
        if kind not in PARAM_TYPES:
            raise TypeError(f"{where}: its default {p.default!r} is a {kind.__name__}; a parameter is a "
                            f"bool, int, float or str")
    if isinstance(p.default, bool) and kind is not bool:
        raise TypeError(f"{where}: its default {p.default!r} is a bool, but its annotation says {kind.__name__}")
    param = Param(p.name, p.default, kind, help, declared)
    if p.default is None and optional:
        return param
    try:
        default = param.coerce(p.default)
    except ValueError as exc:
        raise TypeError(f"{where}: its default does not fit its annotation: {exc}") from None
    return Param(p.name, default, kind, help, declared)


def params_from_signature(func: Callable[..., Any], skip: int) -> dict[str, Param]:
    """The tunable parameters of ``func``: those after the first ``skip`` positional ones, each of
    the type its annotation names (plain, in ``Annotated`` or ``| None``), else its default's."""
    _, helps = _docstring_help(func)
    hints = _hints(func)
    params: dict[str, Param] = {}
    signature = list(inspect.signature(func).parameters.values())
    fixed = [p for p in signature[:skip] if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(fixed) < skip or any(p.default is not p.empty for p in fixed):
        given = {1: "the sample", 3: "folder, image_id and ctx"}.get(skip, f"{skip} arguments")
        raise TypeError(f"{_name(func)}: its first {skip} parameter(s), without defaults, receive {given}; "
                        f"got ({', '.join(str(p) for p in signature)})")
    for index, p in enumerate(signature):
        if index < skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty:
            raise TypeError(f"{_name(func)}: parameter {p.name!r} needs a default value")
        params[p.name] = _declared(func, p, hints.get(p.name), helps.get(p.name, ""))
    return params


def coerce_params(owner: str, declared: Mapping[str, Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults of ``declared`` updated with ``given``, each checked against its declaration."""
    values = {name: p.default for name, p in declared.items()}
    for name, value in given.items():
        if name not in declared:
            valid = ", ".join(declared) or "none"
            raise SeplError(f"{owner} has no parameter {name!r} (its parameters: {valid})")
        try:
            values[name] = declared[name].coerce(value)
        except ValueError as exc:
            raise SeplError(f"{owner}: parameter {name!r}: {exc}") from None
    return values


@dataclass(frozen=True)
class Strategy:
    """A rule that turns a pseudo-label and SAM masks into an enhanced pseudo-label.

    ``select(sample, **params)`` receives a :class:`sepl_tree.sample.Sample` (the pseudo-label,
    the masks, and, computed on first use, the overlap counts, each mask's class, o_s, o_p,
    the paper's keep rule and the containment tree ``sample.tree(tau)``) and returns a
    ``uint8`` label map of the pseudo-label's shape. It must be a pure function.

    ``needs_tree`` is accepted for plugins written before ``sample.tree(tau)`` existed and has
    no effect: a strategy asks the sample for its tree.
    """

    name: str
    select: Callable[..., Any]
    description: str = ""
    needs_tree: bool = False
    params: Mapping[str, Param] = field(default_factory=dict)

    def __post_init__(self) -> None:
        summary, _ = _docstring_help(self.select)
        if not self.description:
            object.__setattr__(self, "description", summary)
        if not self.params:
            object.__setattr__(self, "params", params_from_signature(self.select, skip=1))


@dataclass(frozen=True)
class Reader:
    """A way to read one WSSS baseline's pseudo-labels (or CAMs) as a label map.

    ``read(folder, image_id, ctx, **params)`` returns a ``uint8`` (H, W) label map: 0 background,
    1..K-1 classes, 255 ignore, where K is ``ctx.num_classes``. It raises
    :class:`sepl_tree.errors.InputError` naming the file for anything it cannot read.
    Any other exception, or anything returned that is not such a map, stops the run in one line
    naming the reader and the image.

    ``suffix`` lists the image ids of a folder (every ``<id><suffix>`` file directly in it; a
    suffix holds no ``/``), unless ``list_ids(folder)`` is given. A rerun makes an output again
    when its input changed since it was made: the input of an id is its ``<id><suffix>`` file,
    or, with ``list_ids``, each of its ``<id><suffix>`` and ``<id>_<part><suffix>`` files
    directly in the folder (as ``l2g``'s per-class PNGs). Files in sub-folders are not looked
    at: after changing those, rerun with ``--overwrite``.
    """

    name: str
    read: Callable[..., Any]
    suffix: str = ".png"
    description: str = ""
    aliases: tuple[str, ...] = ()
    params: Mapping[str, Param] = field(default_factory=dict)
    list_ids: Callable[[Path], list[str]] | None = None

    def __post_init__(self) -> None:
        if "/" in self.suffix or "\\" in self.suffix:
            raise TypeError(f"reader {self.name!r}: suffix {self.suffix!r} holds a path separator; a suffix ends "
                            "a file name in the folder (for files in sub-folders, give list_ids)")
        if not self.suffix and self.list_ids is None:
            raise TypeError(f"reader {self.name!r}: an empty suffix lists no ids (give one, e.g. '.npy', or list_ids)")
        summary, _ = _docstring_help(self.read)
        if not self.description:
            object.__setattr__(self, "description", summary)
        if not self.params:
            object.__setattr__(self, "params", params_from_signature(self.read, skip=3))

    @property
    def names(self) -> Iterable[str]:
        return (self.name, *self.aliases)

    def ids(self, folder: Path) -> list[str]:
        """The image ids found in ``folder``, sorted.

        Something named ``<id><suffix>`` that is not a file (a folder, a broken link) is an
        ``InputError`` naming it, not an id silently left out.
        """
        if self.list_ids is not None:
            return sorted(self.list_ids(folder))
        ids = []
        for path in folder.glob(f"*{glob.escape(self.suffix)}"):
            if not path.is_file():
                raise not_a_file(path, f"{self.suffix} file")
            ids.append(path.name[: -len(self.suffix)])
        return sorted(ids)


@dataclass(frozen=True)
class ReadContext:
    """What a reader knows beyond its own parameters.

    Attributes
    ----------
    num_classes
        K, background included.
    image_labels
        Image-level labels, when the user gave ``--labels``: image id -> the classes (1..K-1)
        present in the image. CAM readers restrict their argmax to these classes.
    """

    num_classes: int = 21
    image_labels: Mapping[str, frozenset[int]] | None = None
