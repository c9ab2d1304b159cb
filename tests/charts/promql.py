"""PromQL parsing with a real parser (promql-parser, the Rust crate of GreptimeDB)."""

from __future__ import annotations

from typing import Any

import promql_parser


def parse(expr: str) -> Any:
    """The AST of `expr`; raises ValueError on a syntax error."""
    return promql_parser.parse(expr)


def _children(node: Any) -> list[Any]:
    kind = type(node).__name__
    if kind == "BinaryExpr":
        return [node.lhs, node.rhs]
    if kind in ("AggregateExpr",):
        return [node.expr] + ([node.param] if node.param is not None else [])
    if kind in ("UnaryExpr", "ParenExpr", "SubqueryExpr"):
        return [node.expr]
    if kind == "Call":
        return list(node.args)
    if kind == "MatrixSelector":
        return [node.vector_selector]
    return []


def metric_names(expr: str) -> set[str]:
    """Names of every series selector in `expr` (`{__name__="x"}` counts as `x`)."""
    names: set[str] = set()
    stack = [parse(expr)]
    while stack:
        node = stack.pop()
        if type(node).__name__ == "VectorSelector":
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    names.add(matcher.value)
        stack.extend(_children(node))
    return names
