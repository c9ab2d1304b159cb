"""Environment variables of a service: a misspelled `SLIPWAY_*` key stops it at start.

pydantic-settings reads the variables that match a field and ignores every other one, so
`SLIPWAY_MAX_BACH_SIZE=32` would silently leave the default in place. Each service checks its
prefix against its `Settings` fields; prefixes owned by another program are left to it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from slipway.errors import ConfigError

# Prefixes of other programs inside the `SLIPWAY_` namespace, and whose they are.
OWNED_PREFIXES: dict[str, str] = {
    "SLIPWAY_DRIFT_": "the drift monitor",
    "SLIPWAY_TEST_": "the test suite",
}


def unknown_variables(
    environ: Mapping[str, str], prefix: str, fields: Iterable[str]
) -> dict[str, str | None]:
    """Variables with `prefix` that name no field -> the closest known name (or None)."""
    known = {prefix + name.upper() for name in fields}
    others = [p for p in OWNED_PREFIXES if p.startswith(prefix) and p != prefix]
    unknown: dict[str, str | None] = {}
    for name in environ:
        upper = name.upper()
        if not upper.startswith(prefix) or upper in known:
            continue
        if any(upper.startswith(other) for other in others):
            continue
        close = difflib.get_close_matches(upper, sorted(known), n=1)
        unknown[name] = close[0] if close else None
    return unknown


def check_environment(environ: Mapping[str, str], prefix: str, fields: Iterable[str]) -> None:
    """Raise one `ConfigError` naming every unknown variable, with a suggestion where one fits."""
    unknown = unknown_variables(environ, prefix, fields)
    if not unknown:
        return
    parts = [
        f"{name} (did you mean {guess}?)" if guess else name
        for name, guess in sorted(unknown.items())
    ]
    raise ConfigError(
        f"unknown setting{'s' if len(parts) > 1 else ''} {', '.join(parts)}; "
        f"every {prefix}* variable must name a setting (see docs/configuration.md)"
    )
