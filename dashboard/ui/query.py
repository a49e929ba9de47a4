"""The query box: a pandas ``DataFrame.query`` expression a person types, checked before anything runs.

``df.query`` evaluates Python: attribute access, calls and ``@`` names reach anything in the process.
So the text is parsed with Python's own parser and only a small language is accepted: column names,
constants, comparisons (``==``, ``<``, ``in [...]``...), ``and``/``or``/``not`` (and ``&``/``|``/``~``),
arithmetic on numbers, and a few column methods (``name.str.contains("rag")``, ``error.notna()``,
``model.isin([...])``). Anything else (other attributes, other calls, subscripts, dunder names,
lambdas, f-strings, ``@``) is refused with words saying what, before the frame is touched. The checked
tree is then evaluated here, node by node, over the frame's columns: no ``eval`` of the text at all.
Text matching is plain text, never a regular expression (a pattern could take the server's CPU).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import pandas as pd

MAX_QUERY_CHARS = 2000
MAX_CONSTANT_CHARS = 1000
MAX_DEPTH = 40  # nested parentheses and operators: far past anything typed by hand

COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge}
ARITHMETIC: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv}
SERIES_METHODS = {"isin": 1, "isna": 0, "notna": 0, "isnull": 0, "notnull": 0, "between": 2, "abs": 0}
TEXT_METHODS = {"contains": 1, "startswith": 1, "endswith": 1, "lower": 0, "upper": 0, "len": 0, "strip": 0}
TEXT_KEYWORDS = {"case", "na"}


class QueryError(ValueError):
    """Why an expression cannot be used, in words for the person who typed it."""


@dataclass(frozen=True)
class Query:
    """A checked expression: ``mask(frame)`` says which rows it keeps."""

    text: str
    tree: ast.expr
    columns: frozenset[str]  # the columns it names: all a frame needs to be filtered by it

    def mask(self, frame: pd.DataFrame) -> pd.Series:
        """True for each row of ``frame`` the expression keeps; ``QueryError`` if it cannot be applied
        (a comparison of text with a number, say)."""
        try:
            value = _Evaluator(frame).value(self.tree)
        except QueryError:
            raise
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise QueryError(f"cannot be applied to these rows: {exc}") from None
        if isinstance(value, bool | None):
            return pd.Series(bool(value), index=frame.index)
        if not isinstance(value, pd.Series) or not pd.api.types.is_bool_dtype(value.dtype):
            raise QueryError("must be true or false for each row (a comparison, say), not a value")
        return value.fillna(False).astype(bool)


def compile_query(text: str, columns: Collection[str]) -> Query | None:
    """The checked query, or None for an empty one (every row); ``QueryError`` saying what is wrong."""
    text = text.strip()
    if not text:
        return None
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"is longer than {MAX_QUERY_CHARS} characters")
    if "@" in text or "`" in text:
        raise QueryError("may not use @ or backticks: name the table's columns directly")
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        where = f" at character {exc.offset}" if exc.offset else " (it seems unfinished)"
        raise QueryError(f"does not parse: {exc.msg}{where}") from None
    except (ValueError, RecursionError, MemoryError):
        raise QueryError("does not parse") from None
    known = frozenset(columns)
    _check(tree, known, depth=0)
    return Query(text, tree, frozenset(node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id in known))


def _check(node: ast.AST, columns: frozenset[str], depth: int) -> None:
    """Refuse every node outside the small language, naming it."""
    if depth > MAX_DEPTH:
        raise QueryError(f"nests deeper than {MAX_DEPTH} levels")
    children: list[ast.AST]
    if isinstance(node, ast.BoolOp):
        children = list(node.values)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.Invert | ast.USub | ast.UAdd):
        children = [node.operand]
    elif isinstance(node, ast.BinOp) and type(node.op) in ARITHMETIC | {ast.BitAnd: None, ast.BitOr: None}:
        children = [node.left, node.right]
    elif isinstance(node, ast.Compare):
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn) and not isinstance(right, ast.List | ast.Tuple):
                raise QueryError("'in' needs a list of values: model in ['gpt-4o', 'claude']")
            if not isinstance(op, ast.In | ast.NotIn) and type(op) not in COMPARE:
                raise QueryError(f"cannot compare with {type(op).__name__}; use ==, !=, <, <=, >, >=, in")
        children = [node.left, *node.comparators]
    elif isinstance(node, ast.Name):
        if node.id not in columns:
            raise QueryError(f"names no column {node.id!r}; the columns are {', '.join(sorted(columns))}")
        return
    elif isinstance(node, ast.Constant):
        _check_constant(node.value)
        return
    elif isinstance(node, ast.List | ast.Tuple):
        if len(node.elts) > 1000:
            raise QueryError("lists may hold at most 1000 values")
        children = list(node.elts)
    elif isinstance(node, ast.Call):
        children = _check_call(node, columns)
    else:
        raise QueryError(f"may not use {_describe(node)}: only columns, values, comparisons, and/or/not, "
                         "arithmetic and column methods such as name.str.contains('rag')")
    for child in children:
        _check(child, columns, depth + 1)


def _check_constant(value: Any) -> None:
    if isinstance(value, str) and len(value) > MAX_CONSTANT_CHARS:
        raise QueryError(f"a text value is longer than {MAX_CONSTANT_CHARS} characters")
    if isinstance(value, float) and not math.isfinite(value):
        raise QueryError("numbers must be finite")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
        raise QueryError("a number is too large")
    if not isinstance(value, str | int | float | bool | type(None)):
        raise QueryError(f"may not use the value {value!r}")


def _check_call(node: ast.Call, columns: frozenset[str]) -> list[ast.AST]:
    """A column method (``error.notna()``) or a text method (``name.str.contains('x')``), with values for
    arguments; returns the arguments to check."""
    func = node.func
    if not isinstance(func, ast.Attribute):
        raise QueryError("may call only column methods, such as name.str.contains('rag') or error.notna()")
    owner, method = func.value, func.attr
    if isinstance(owner, ast.Attribute) and owner.attr == "str" and isinstance(owner.value, ast.Name):
        allowed, column = TEXT_METHODS, owner.value
    elif isinstance(owner, ast.Name):
        allowed, column = SERIES_METHODS, owner
    else:
        raise QueryError(f"may not call {ast.unparse(func)!r}: only a column's own methods")
    if method not in allowed:
        names = ", ".join(f"{'.str.' if allowed is TEXT_METHODS else '.'}{name}()" for name in sorted(allowed))
        raise QueryError(f"may not call {method!r}; the methods are {names}")
    if len(node.args) != allowed[method]:
        raise QueryError(f"{method}() takes {allowed[method]} value(s), got {len(node.args)}")
    for keyword in node.keywords:
        if allowed is not TEXT_METHODS or keyword.arg not in TEXT_KEYWORDS:
            raise QueryError(f"{method}() takes no {keyword.arg or '**'} argument here"
                             + ("; text is matched as plain text, never as a regular expression"
                                if keyword.arg in {"regex", "flags"} else ""))
    for argument in [*node.args, *(keyword.value for keyword in node.keywords)]:
        if not isinstance(argument, ast.Constant | ast.List | ast.Tuple | ast.UnaryOp):
            raise QueryError(f"{method}() takes plain values (text, numbers, lists of them)")
    return [column, *node.args, *(keyword.value for keyword in node.keywords)]


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"the attribute {node.attr!r}" + (" (a dunder name)" if node.attr.startswith("__") else "")
    if isinstance(node, ast.Subscript):
        return "subscripts ([...])"
    if isinstance(node, ast.BinOp):
        symbols = {"Pow": "**", "LShift": "<<", "RShift": ">>", "BitXor": "^", "MatMult": "@"}
        return f"the operator {symbols.get(type(node.op).__name__, type(node.op).__name__)}"
    return {"Lambda": "lambdas", "JoinedStr": "f-strings", "ListComp": "comprehensions", "GeneratorExp": "comprehensions",
            "IfExp": "if/else", "NamedExpr": ":=", "Dict": "dictionaries", "Set": "sets",
            "Starred": "*"}.get(type(node).__name__, type(node).__name__)


class _Evaluator:
    """Walks a checked tree over one frame; each column is read once."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def value(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.frame[node.id]
        if isinstance(node, ast.List | ast.Tuple):
            return [self.value(item) for item in node.elts]
        if isinstance(node, ast.BoolOp):
            combine = operator.and_ if isinstance(node.op, ast.And) else operator.or_
            result = self._truth(self.value(node.values[0]))
            for item in node.values[1:]:
                result = combine(result, self._truth(self.value(item)))
            return result
        if isinstance(node, ast.UnaryOp):
            operand = self.value(node.operand)
            if isinstance(node.op, ast.Not | ast.Invert):
                return ~self._truth(operand)
            return -self._number(operand) if isinstance(node.op, ast.USub) else self._number(operand)
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.BitAnd | ast.BitOr):
                combine = operator.and_ if isinstance(node.op, ast.BitAnd) else operator.or_
                return combine(self._truth(self.value(node.left)), self._truth(self.value(node.right)))
            return ARITHMETIC[type(node.op)](self._number(self.value(node.left)), self._number(self.value(node.right)))
        if isinstance(node, ast.Compare):
            return self._compare(node)
        return self._call(node)  # the checker let nothing else through

    def _compare(self, node: ast.Compare) -> Any:
        result: Any = True
        left = self.value(node.left)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self.value(right_node)
            if isinstance(op, ast.In | ast.NotIn):
                found = left.isin(right) if isinstance(left, pd.Series) else left in right
                step = found if isinstance(op, ast.In) else ~found if isinstance(found, pd.Series) else not found
            else:
                step = COMPARE[type(op)](left, right)
            result = step if result is True else result & step
            left = right
        return result

    def _call(self, node: ast.Call) -> pd.Series:
        func = node.func
        assert isinstance(func, ast.Attribute)
        args = [self.value(argument) for argument in node.args]
        if isinstance(func.value, ast.Attribute):  # column.str.method(...)
            column = self.frame[func.value.value.id].astype("string")  # type: ignore[attr-defined]
            options = {keyword.arg: self.value(keyword.value) for keyword in node.keywords}
            if func.attr == "contains":
                return column.str.contains(args[0], regex=False, case=bool(options.get("case", True)),
                                           na=bool(options.get("na", False)))
            if func.attr in {"startswith", "endswith"}:
                return getattr(column.str, func.attr)(args[0], na=bool(options.get("na", False)))
            return getattr(column.str, func.attr)()
        column = self.frame[func.value.id]  # type: ignore[attr-defined]
        return getattr(column, func.attr)(*args)

    @staticmethod
    def _truth(value: Any) -> Any:
        if isinstance(value, pd.Series):
            if not pd.api.types.is_bool_dtype(value.dtype):
                raise QueryError("and/or/not need comparisons on each side (latency_ms > 1000 and ...)")
            return value.fillna(False).astype(bool)
        return bool(value)

    @staticmethod
    def _number(value: Any) -> Any:
        """Arithmetic is for numbers only: text times a number would build huge strings."""
        numeric = (pd.api.types.is_numeric_dtype(value.dtype) and not pd.api.types.is_bool_dtype(value.dtype)
                   if isinstance(value, pd.Series) else isinstance(value, int | float) and not isinstance(value, bool))
        if not numeric:
            raise QueryError("arithmetic works on numbers only (latency_ms / 1000 > 2)")
        return value
