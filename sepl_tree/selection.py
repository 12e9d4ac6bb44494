"""Strategies bound to their parameters and applied to a sample, with their output checked.

``--param NAME=VALUE`` pairs are routed to the strategies and the reader that declare them
(:func:`route_params`), coerced against the declarations (:func:`bind_strategy`), and the bound
strategy (:class:`Selector`) runs on a :class:`~sepl_tree.sample.Sample`. No files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sepl_tree.errors import SeplError, StrategyError
from sepl_tree.label_maps import IGNORE, first_bad_label
from sepl_tree.masks import MaskSet
from sepl_tree.plugins import PluginHost
from sepl_tree.registry import Reader, Strategy, coerce_params
from sepl_tree.sample import Sample

__all__ = ["Selector", "bind_strategy", "route_params"]


def route_params(given: Mapping[str, str], strategies: Mapping[str, Strategy], reader: Reader,
                 origin: str = "--param") -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Send each ``--param`` to the strategies and reader that declare it.

    ``STRATEGY:NAME=VALUE`` goes to that strategy only, ``reader:NAME=VALUE`` to the reader;
    a bare ``NAME=VALUE`` goes to the reader if it declares NAME, else to every listed strategy
    that declares it. A name nobody declares is an error, naming the key after ``origin`` (where
    the parameters come from: ``--param``, or a config file's ``[params]`` table).

    >>> from sepl_tree.plugins import load_host
    >>> host = load_host(autoload=False)
    >>> s = {n: host.strategy(n) for n in ("threshold", "official")}
    >>> route_params({"t2": "0.9", "threshold:t1": "0.6"}, s, host.reader("png"))
    ({'threshold': {'t2': '0.9', 't1': '0.6'}, 'official': {'t2': '0.9'}}, {})
    """
    per: dict[str, dict[str, str]] = {name: {} for name in strategies}
    to_reader: dict[str, str] = {}
    for key, value in given.items():
        owner, colon, name = key.rpartition(":")
        if colon:
            if owner == "reader":
                to_reader[name] = value
            elif owner in strategies:
                per[owner][name] = value
            else:
                raise SeplError(f"{origin} {key}: {owner!r} is neither 'reader' nor a strategy of this run "
                                f"({', '.join(strategies)})")
        elif key in reader.params:
            to_reader[key] = value
        else:
            takers = [s for s, strat in strategies.items() if key in strat.params]
            if not takers:
                declared = "; ".join(f"strategy {n!r}: {', '.join(st.params) or 'none'}" for n, st in strategies.items())
                raise SeplError(f"{origin} {key}: no such parameter ({declared}; reader {reader.name!r}: "
                                f"{', '.join(reader.params) or 'none'})")
            for s in takers:
                per[s][key] = value
    return per, to_reader




@dataclass
class Selector:
    """A strategy bound to its parameters, applied to in-memory arrays (no files).

    What the strategy returns is checked: a ``(H, W)`` map of values 0..K-1 or 255, else a
    :class:`~sepl_tree.errors.StrategyError` naming the strategy (and nothing is written). An
    exception inside the strategy becomes one such error naming the strategy, where it comes
    from and the image.
    """

    strategy: Strategy
    params: dict[str, Any]
    num_classes: int = 21
    source: str = ""

    def __call__(self, pseudo: np.ndarray, masks: MaskSet, image_id: str = "") -> np.ndarray:
        return self.apply(Sample(pseudo, masks, self.num_classes, image_id=image_id))

    def apply(self, sample: Sample) -> np.ndarray:
        """Run on a prepared sample (which caches its overlap and trees for several strategies)."""
        try:
            out = self.strategy.select(sample, **self.params)
        except SeplError:
            raise
        except Exception as exc:  # a plugin's rule can fail in any way: say whose and where
            raise StrategyError(self._who(sample) + f" failed: {type(exc).__name__}: {exc}{_api_hint(self, exc)}") from exc
        return self._checked(out, sample)

    def _who(self, sample: Sample) -> str:
        where = f" ({self.source})" if self.source and self.source != "built-in" else ""
        on = f" on image {sample.image_id!r}" if sample.image_id else ""
        return f"strategy {self.strategy.name!r}{where}{on}"

    def _checked(self, out: Any, sample: Sample) -> np.ndarray:
        if not isinstance(out, np.ndarray) or out.shape != sample.pseudo.shape:
            got = getattr(out, "shape", type(out).__name__)
            raise StrategyError(f"{self._who(sample)} returned {got}, expected an array of shape {sample.pseudo.shape}")
        if out.dtype == bool:  # a mask, not labels: class 1 on every True pixel is never what was meant
            raise StrategyError(f"{self._who(sample)} returned a bool array (a mask?); a label map holds the "
                                f"labels 0..{self.num_classes - 1} or {IGNORE}")
        if out.dtype != np.uint8:
            if out.dtype.kind not in "iu":  # (float labels from np.where or a division: say what to do)
                raise StrategyError(f"{self._who(sample)} returned an array of {out.dtype}; a label map holds the "
                                    f"integers 0..{self.num_classes - 1} or {IGNORE} (if its values are labels, "
                                    "return out.astype(np.uint8))")
            if out.size and (out.min() < 0 or out.max() > IGNORE):
                bad = int(out.min()) if out.min() < 0 else int(out.max())
                raise StrategyError(f"{self._who(sample)} returned label {bad}, outside "
                                    f"0..{self.num_classes - 1} and {IGNORE}")
            out = out.astype(np.uint8)
        if (bad := first_bad_label(out, self.num_classes)) is not None:
            raise StrategyError(f"{self._who(sample)} returned label {bad}, outside "
                                f"0..{self.num_classes - 1} and {IGNORE}")
        return out


def bind_strategy(host: PluginHost, name: str, given: Mapping[str, Any], num_classes: int) -> Selector:
    """The strategy ``name`` bound to its checked parameters (``given`` over the defaults)."""
    if not 2 <= num_classes <= IGNORE:  # (as --num-classes: a class 255 would be the ignore value)
        raise SeplError(f"num_classes must be 2..{IGNORE} (background included), got {num_classes}")
    strategy = host.strategy(name)
    params = coerce_params(f"strategy {strategy.name!r}", strategy.params, given)
    return Selector(strategy, params, num_classes, host.strategies[strategy.name].source)


def _api_hint(selector: Selector, exc: Exception) -> str:
    """What changed, for a plugin written against the API before ``sample.tree(tau)``."""
    on_tree = isinstance(exc, AttributeError) and getattr(getattr(exc, "obj", None), "__name__", "") == "tree"
    if on_tree or (selector.strategy.needs_tree and isinstance(exc, (AttributeError, TypeError))):
        return ("; sample.tree is now a method: call sample.tree(tau) for the containment tree "
                "(needs_tree is no longer needed)")
    return ""
