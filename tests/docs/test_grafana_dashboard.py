"""docs/grafana/bastion-dashboard.json, docs/metrics.md and docs/operations.md speak of the
metrics bastion serves: every query and page names only metrics that exist, and every metric has
a panel and a line in the documentation."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from bastion.ops import metrics

DOCS = Path(__file__).parents[2] / "docs"
DASHBOARD = DOCS / "grafana" / "bastion-dashboard.json"
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def families() -> dict[str, set[str]]:
    """Each metric's name and the names of the samples it serves."""
    found: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                found[family.name] = {family.name + s for s in SUFFIXES[family.type]}
    return found


def expressions(node: Any) -> Iterator[str]:
    """Every PromQL expression in the dashboard: queries of panels and of variables."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def test_every_query_names_only_metrics_bastion_serves() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    served = set().union(*families().values())
    queries = list(expressions(dashboard))
    assert len(queries) >= 20
    for query in queries:
        named = set(re.findall(r"\bbastion_[a-z0-9_]+", query))
        assert named, f"a query about no bastion metric: {query}"
        assert named <= served, f"{sorted(named - served)} in {query}"


def test_every_metric_has_a_panel_and_a_line_in_the_docs() -> None:
    text = DASHBOARD.read_text()
    page = (DOCS / "metrics.md").read_text()
    for name, samples in families().items():
        assert any(sample in text for sample in samples), f"no panel shows {name}"
        # The page names a counter by its sample (..._total), the others by their name.
        documented = f"{name}_total" if f"{name}_total" in samples else name
        assert f"| `{documented}` |" in page, f"docs/metrics.md does not list {documented}"


def test_the_dashboard_is_grafana_json_with_unique_panel_ids() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys(), panel["title"]
        for target in panel.get("targets", []):
            assert target["refId"] and target["datasource"]["type"] == "prometheus"


def test_the_pages_that_name_metrics_name_only_metrics_bastion_serves() -> None:
    """docs/operations.md and docs/metrics.md (its alert rules) name metrics by their names or
    samples; each must exist."""
    names = set(families()) | set().union(*families().values())
    for page in ("operations.md", "metrics.md"):
        named = set(re.findall(r"\bbastion_[a-z0-9_]+", (DOCS / page).read_text()))
        assert named, page
        # Prefixes such as bastion_http_ in prose are not metric names.
        unknown = {n for n in named if not n.endswith("_") and n not in names}
        assert not unknown, f"docs/{page} names {sorted(unknown)}"
