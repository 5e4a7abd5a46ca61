"""Region selectors that are data, not code: safe expressions and boxes.

A selector maps voxel-centre coordinate arrays ``x, y, z`` (µm) to a boolean
mask. Besides any Python callable, two declarative forms exist so that scenario
files never execute code:

- :class:`Where`: an expression over ``x``, ``y``, ``z`` such as ``"x < 0.5"``,
  ``"0.5 <= x < 1 and y > 2"`` or ``"(x-2)**2 + (y-2)**2 < 1"``. Allowed:
  numbers, the names x, y, z, ``+ - * / **``, unary ``-``, comparisons (chained
  too), ``and``, ``or``, ``not`` and parentheses. The text is parsed with
  :mod:`ast` and evaluated node by node on numpy arrays; nothing else (calls,
  attributes, subscripts, other names) is accepted, so it is safe on untrusted
  input.
- :class:`Box`: ``lo <= centre < hi`` on every axis (half-open, so adjacent
  boxes never share a voxel).
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..errors import GeometryError

__all__ = ["Box", "Where"]

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_CMPOPS = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


@dataclass(frozen=True)
class Where:
    """A safe boolean expression over x, y, z (µm), e.g. ``Where("x < 0.5")``."""

    expression: str

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str) or not self.expression.strip():
            raise GeometryError(
                f"region expression must be a non-empty string, got {self.expression!r}"
            )
        try:
            tree = ast.parse(self.expression.strip(), mode="eval")
        except SyntaxError as exc:
            raise GeometryError(
                f"cannot read region expression {self.expression!r}: {exc.msg}"
            ) from None
        self._check(tree.body)

    def _check(self, node: ast.AST) -> None:
        bad = None
        if isinstance(node, ast.BoolOp):
            for v in node.values:
                self._check(v)
        elif isinstance(node, ast.Compare):
            if not all(type(op) in _CMPOPS for op in node.ops):
                bad = "comparison operator"
            else:
                for v in (node.left, *node.comparators):
                    self._check(v)
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINOPS:
                bad = "operator"
            else:
                self._check(node.left)
                self._check(node.right)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
                bad = "operator"
            else:
                self._check(node.operand)
        elif isinstance(node, ast.Name):
            if node.id not in ("x", "y", "z"):
                bad = f"name {node.id!r} (only x, y and z are known)"
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                bad = f"constant {node.value!r}"
        else:
            bad = f"construct {type(node).__name__}"
        if bad:
            raise GeometryError(f"region expression {self.expression!r}: {bad} is not allowed")

    def _eval(self, node: ast.AST, env: dict[str, NDArray[np.float64]]):
        if isinstance(node, ast.BoolOp):
            vals = [np.asarray(self._eval(v, env), dtype=bool) for v in node.values]
            f = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            out = vals[0]
            for v in vals[1:]:
                out = f(out, v)
            return out
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, env)
            out = None
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = self._eval(comp, env)
                res = _CMPOPS[type(op)](left, right)
                out = res if out is None else np.logical_and(out, res)
                left = right
            return out
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](self._eval(node.left, env), self._eval(node.right, env))
        if isinstance(node, ast.UnaryOp):
            v = self._eval(node.operand, env)
            if isinstance(node.op, ast.Not):
                return np.logical_not(v)
            return -v if isinstance(node.op, ast.USub) else +v
        if isinstance(node, ast.Name):
            return env[node.id]
        assert isinstance(node, ast.Constant)
        return float(node.value)

    def __call__(self, x, y, z) -> NDArray[np.bool_]:
        tree = ast.parse(self.expression.strip(), mode="eval")
        with np.errstate(all="ignore"):
            out = self._eval(tree.body, {"x": x, "y": y, "z": z})
        out = np.asarray(out)
        if out.dtype != np.bool_:
            raise GeometryError(
                f"region expression {self.expression!r} is not a condition "
                "(use a comparison such as 'x < 0.5')"
            )
        return np.broadcast_to(out, np.shape(x)).copy()


@dataclass(frozen=True)
class Box:
    """Voxels whose centre satisfies ``lo <= centre < hi`` on every axis (µm)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    def __post_init__(self) -> None:
        for name in ("lo", "hi"):
            v = getattr(self, name)
            try:
                t = tuple(float(a) for a in v)
            except (TypeError, ValueError):
                raise GeometryError(f"box {name} must be three numbers, got {v!r}") from None
            if len(t) != 3 or not all(np.isfinite(t)):
                raise GeometryError(f"box {name} must be three finite numbers, got {v!r}")
            object.__setattr__(self, name, t)
        if any(h <= lo for lo, h in zip(self.lo, self.hi, strict=True)):
            raise GeometryError(f"box hi {self.hi} must exceed lo {self.lo} on every axis")

    def __call__(self, x, y, z) -> NDArray[np.bool_]:
        (x0, y0, z0), (x1, y1, z1) = self.lo, self.hi
        return (x >= x0) & (x < x1) & (y >= y0) & (y < y1) & (z >= z0) & (z < z1)
