"""The start-up note about the registry's old scope names (checklist G03).

bastion's registry scopes were ``registry:read|write|admin`` (and ``registry:read:<group>``);
they are now ``mcp-registry:read|write|admin`` as the registry authorization document recommends
(or the names in ``[registry.scope_names]``). The old names keep working for one release as
aliases: in tokens already issued, in the configuration, in access rules. The registry says so
once when it starts, naming every place that still uses them, so the operator can rename them
before the aliases go.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.config import OLD_REGISTRY_SCOPES, Settings
from bastion.oauth.resource import canonical
from bastion.store import access as rule_rows


async def old_scope_note(settings: Settings, conn: AsyncConnection) -> str | None:
    """The operator's note when the configuration or the access rules about the registry still
    name scopes by their old names (None when nothing does)."""
    registry = settings.registry
    names = registry.scope_names
    places = [f"{where} ({' '.join(old)})" for where, old in registry.old_names.items()]
    resource = canonical(registry.public_url or f"{settings.issuer}/registry")
    for rule in await rule_rows.list_rules(conn, resource):
        old = [s for s in rule.scopes if names.is_old(s)]
        if old:
            places.append(f"access rule {rule.resource} {rule.who} ({' '.join(old)})")
    if not places:
        return None
    renames = ", ".join(
        f"{old} -> {new}"
        for old, new in zip(OLD_REGISTRY_SCOPES, names.names, strict=True)
        if old != new
    )
    return (
        f"the registry's scopes are now {' '.join(names.names)}; old names are still used in "
        f"{'; '.join(places)}. They keep working as aliases for this release only: rename them "
        f"({renames}, registry:read:<group> -> {names.read}:<group>; access rules with "
        "`bastion access allow`), see docs/registry.md, Scope names"
    )


__all__ = ["old_scope_note"]
