"""PostgREST's query-string grammar, as much of it as postgrest-py 2.34 sends for our adapter, turned into
``psycopg.sql`` fragments for the PostgREST stand-in: ``select`` (columns, ``*``, computed fields),
filters (``col=op.value``), ``or=(...)``/``and=(...)`` trees, ``order``, ``limit``, ``offset``.

Values are never put into SQL text: each is a ``%s`` parameter sent as a Python str, which psycopg sends
with the unknown type, so PostgreSQL reads it as the column's type (as PostgREST's own casts would).
Anything outside this subset is refused with ``Unsupported`` rather than guessed at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

ALIAS = "pgrst_t"  # the table's alias in every statement: filters and selects are qualified with it
OPERATORS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
IS_VALUES = {"null": "NULL", "true": "TRUE", "false": "FALSE", "unknown": "UNKNOWN"}
RESERVED = {"select", "order", "limit", "offset", "columns", "on_conflict"}
LOGIC = re.compile(r"^(not\.)?(and|or)(\(.*\))$", re.S)


class QueryError(Exception):
    """A request PostgREST itself would refuse: an error body with PostgREST's code and status."""

    def __init__(self, status: int, code: str, message: str, details: Any = None, hint: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details, self.hint = status, code, message, details, hint

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "details": self.details, "hint": self.hint, "message": self.message}


class Unsupported(QueryError):
    """A request real PostgREST would serve but this stand-in does not translate: fail loudly, not guess."""

    def __init__(self, what: str) -> None:
        super().__init__(501, "STANDIN", f"the Supabase stand-in does not translate {what}",
                         hint="tests/supabase_standin translates only what the adapter sends")


def parse_error(message: str, details: Any = None) -> QueryError:
    return QueryError(400, "PGRST100", message, details)


@dataclass
class Table:
    """What the stand-in knows of a table, as PostgREST's schema cache would: columns and computed fields."""

    name: str
    columns: list[str]
    computed: set[str] = field(default_factory=set)

    def ident(self) -> sql.Composable:
        return sql.Identifier("public", self.name)

    def column(self, name: str) -> sql.Composable:
        if name not in self.columns:
            raise QueryError(400, "42703", f"column {self.name}.{name} does not exist")
        return sql.Identifier(ALIAS, name)


def split_top(text: str, separator: str = ",") -> list[str]:
    """Split at ``separator`` outside double quotes (backslash escapes inside) and parentheses."""
    parts, current, depth, quoted, escaped = [], [], 0, False, False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == separator:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quoted or depth:
        raise parse_error("unbalanced quotes or parentheses", text)
    parts.append("".join(current))
    return parts


def unquote(value: str) -> str:
    """A double-quoted value as PostgREST reads it in a logic tree or list: quotes off, ``\\x`` is ``x``."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1], flags=re.S)
    return value


def split_column(text: str) -> tuple[str, str]:
    """``col.rest`` or ``"quoted col".rest`` into the column and the rest."""
    if text.startswith('"'):
        end = re.match(r'"((?:[^"\\]|\\.)*)"\.', text, re.S)
        if not end:
            raise parse_error("bad quoted column", text)
        return unquote(text[: end.end() - 1]), text[end.end():]
    column, dot, rest = text.partition(".")
    if not dot or not column:
        raise parse_error(f'"failed to parse filter ({text})"', text)
    return column, rest


def condition(table: Table, column: str, expression: str, params: list[Any], in_tree: bool) -> sql.Composable:
    """One filter, ``op.value`` on ``column`` (``not.`` may come first); in a logic tree values may be quoted."""
    negate = expression.startswith("not.")
    if negate:
        expression = expression[4:]
    op, dot, value = expression.partition(".")
    if not dot:
        raise parse_error(f'"failed to parse filter ({op})"', expression)
    target = table.column(column)
    if op in OPERATORS:
        params.append(unquote(value) if in_tree else value)
        clause = sql.SQL("{} {} {}").format(target, sql.SQL(OPERATORS[op]), sql.Placeholder())
    elif op == "is":
        if value.lower() not in IS_VALUES:
            raise parse_error(f'"failed to parse filter (is.{value})"', value)
        clause = sql.SQL("{} IS {}").format(target, sql.SQL(IS_VALUES[value.lower()]))
    elif op == "in":
        if not (value.startswith("(") and value.endswith(")")):
            raise parse_error(f'"failed to parse filter (in.{value})"', value)
        items = [unquote(item) for item in split_top(value[1:-1])] if value[1:-1] else []
        params.extend(items)
        clause = (sql.SQL("{} IN ({})").format(target, sql.SQL(", ").join(sql.Placeholder() for _ in items))
                  if items else sql.SQL("FALSE"))
    else:
        raise Unsupported(f"the filter operator {op!r}")
    return sql.SQL("NOT ({})").format(clause) if negate else clause


def logic_tree(table: Table, conjunction: str, text: str, params: list[Any]) -> sql.Composable:
    """``(a.lt.v,and(b.eq.w,c.is.null))`` joined with ``conjunction`` (AND or OR)."""
    if not (text.startswith("(") and text.endswith(")")):
        raise parse_error(f'"failed to parse logic tree ({text})"', text)
    parts = []
    for item in split_top(text[1:-1]):
        nested = LOGIC.match(item)
        if nested:
            inner = logic_tree(table, nested[2].upper(), nested[3], params)
            parts.append(sql.SQL("NOT {}").format(inner) if nested[1] else inner)
        else:
            column, rest = split_column(item)
            parts.append(condition(table, column, rest, params, in_tree=True))
    if not parts or parts == [""]:
        raise parse_error("empty logic tree", text)
    return sql.SQL("({})").format(sql.SQL(f" {conjunction} ").join(parts))


def where(table: Table, query: list[tuple[str, str]], params: list[Any]) -> sql.Composable:
    """Every filter of the query string ANDed, in order (several on one column are all kept)."""
    clauses: list[sql.Composable] = []
    for key, value in query:
        if key in RESERVED:
            continue
        tree = re.fullmatch(r"(not\.)?(and|or)", key)
        if tree:
            clause = logic_tree(table, tree[2].upper(), value, params)
            clauses.append(sql.SQL("NOT {}").format(clause) if tree[1] else clause)
        elif "." in key and not key.startswith('"'):
            raise Unsupported(f"the parameter {key!r} (embedded resources)")
        else:
            clauses.append(condition(table, unquote(key), value, params, in_tree=False))
    return sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("TRUE")


def select_list(table: Table, select: str | None) -> sql.Composable:
    """``select=a,b,fn`` as ``pgrst_t.a, pgrst_t.b, public.fn(pgrst_t) AS fn``; ``alias:col`` is kept."""
    items = split_top(select) if select else ["*"]
    exprs: list[sql.Composable] = []
    for item in items:
        alias, colon, name = item.rpartition(":") if ":" in item and "::" not in item else ("", "", item)
        name = unquote(name)
        if "::" in item or "(" in item or "->" in item:
            raise Unsupported(f"the select item {item!r} (casts, embeds, JSON paths)")
        if name == "*" and not alias:
            exprs.append(sql.SQL("{}.*").format(sql.Identifier(ALIAS)))
            continue
        if name in table.columns:
            expr: sql.Composable = sql.Identifier(ALIAS, name)
        elif name in table.computed:
            expr = sql.SQL("{}({})").format(sql.Identifier("public", name), sql.Identifier(ALIAS))
        else:
            raise QueryError(400, "42703", f"column {table.name}.{name} does not exist")
        exprs.append(sql.SQL("{} AS {}").format(expr, sql.Identifier(unquote(alias) if colon else name)))
    return sql.SQL(", ").join(exprs)


def order_by(table: Table, order: str | None) -> sql.Composable:
    """``order=a.desc,b.asc.nullslast`` as an ORDER BY clause (empty without ``order``)."""
    if not order:
        return sql.SQL("")
    terms = []
    for item in split_top(order):
        column, _, modifiers = item.partition(".")
        term = table.column(column)
        for modifier in filter(None, modifiers.split(".")):
            words = {"asc": "ASC", "desc": "DESC", "nullsfirst": "NULLS FIRST", "nullslast": "NULLS LAST"}
            if modifier not in words:
                raise parse_error(f'"failed to parse order ({order})"', order)
            term = sql.SQL("{} {}").format(term, sql.SQL(words[modifier]))
        terms.append(term)
    return sql.SQL(" ORDER BY {}").format(sql.SQL(", ").join(terms))


def paging(query: dict[str, str], params: list[Any]) -> sql.Composable:
    """``limit`` and ``offset`` as parameters."""
    parts = []
    for key in ("limit", "offset"):
        if key in query:
            try:
                number = int(query[key])
            except ValueError:
                raise parse_error(f'"failed to parse {key} ({query[key]})"') from None
            params.append(number)
            parts.append(sql.SQL(f" {key.upper()} ") + sql.Placeholder())
    return sql.Composed(parts)
