"""A small client of the Prometheus HTTP API (instant queries), on the standard library.

Shared by the rollout controller and the drift monitor's Prometheus source. Every failure is a
`PrometheusError` whose text names the server and the query:

    PrometheusError
      - the server cannot be reached (connection refused, DNS, timeout)
      - the server answered with an HTTP error or with `status: error` (bad PromQL)
      - the answer is not the JSON the API documents
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from slipway.errors import SlipwayError

__all__ = ["PrometheusClient", "PrometheusError", "label_selector"]


class PrometheusError(SlipwayError):
    """Prometheus could not answer a query; the text says which server, which query and why."""


def label_selector(labels: dict[str, str], extra: str = "") -> str:
    """`{k="v",...}` with values escaped, plus raw extra matchers (`namespace="prod"`)."""
    parts = [f"{key}={json.dumps(value)}" for key, value in labels.items()]
    if extra.strip():
        parts.append(extra.strip().strip(","))
    return "{" + ",".join(parts) + "}"


class PrometheusClient:
    """Instant queries against one Prometheus server."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise PrometheusError(f"Prometheus URL must start with http:// or https://: {url!r}")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        # In-cluster and loopback servers are reached directly, never through a proxy.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector `expr` evaluates to (now, or at unix time `at`)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        try:
            with self._opener.open(url, timeout=self.timeout_s) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = _error_body(exc)
            if body is None:
                raise PrometheusError(
                    f"Prometheus at {self.url} answered HTTP {exc.code} to {expr!r}"
                ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {reason}") from None
        except ValueError:
            raise PrometheusError(
                f"Prometheus at {self.url} answered no JSON to {expr!r}"
            ) from None
        if body.get("status") != "success":
            raise PrometheusError(
                f"Prometheus at {self.url} rejected {expr!r}: {body.get('error', body)}"
            )
        data = body.get("data", {})
        if data.get("resultType") != "vector":
            raise PrometheusError(f"{expr!r} is not an instant vector ({data.get('resultType')})")
        return list(data.get("result", []))

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The single value of `expr`, or None when it has no sample (or NaN: nothing to
        divide by). More than one series is an error: aggregate in the query."""
        result = self.query(expr, at)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"{expr!r} returned {len(result)} series; expected one")
        number = float(result[0]["value"][1])
        return None if math.isnan(number) else number

    def by_label(self, expr: str, label: str, at: float | None = None) -> dict[str, float]:
        """{value of `label`: sample value} for a vector with one series per label value."""
        found: dict[str, float] = {}
        for series in self.query(expr, at):
            number = float(series["value"][1])
            if not math.isnan(number):
                found[series["metric"].get(label, "")] = number
        return found


def _error_body(exc: urllib.error.HTTPError) -> dict[str, Any] | None:
    """Prometheus answers a bad query with 400/422 and a JSON error body; keep its message."""
    try:
        body = json.loads(exc.read())
    except (ValueError, OSError):
        return None
    return body if isinstance(body, dict) else None
