"""docs/replicas.md shows the HAProxy configuration the load balancer test runs, as it is."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_the_documented_haproxy_configuration_is_the_one_the_test_runs() -> None:
    """Every directive of deploy/haproxy/bastion.cfg is in docs/replicas.md's copy, and the copy
    has no directive the file lacks."""
    config = (ROOT / "deploy" / "haproxy" / "bastion.cfg").read_text()
    doc = (ROOT / "docs" / "replicas.md").read_text()
    shown = doc.split("\n```\nglobal\n", 1)[1].split("\n```", 1)[0]
    directives = [
        line.strip() for line in config.splitlines() if line.strip() and not line.startswith("#")
    ]
    documented = ["global", *(line.strip() for line in shown.splitlines() if line.strip())]
    assert [d for d in directives if not d.startswith("#")] == [
        d for d in documented if not d.startswith("#")
    ]
