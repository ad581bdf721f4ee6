"""``[registry.scope_names]``: the names of the registry's scopes and the roles they stand for,
old names included."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The registry's scopes by default (registry authorization document, "Registry-Specific Scopes";
# checklist G03), and the names bastion used before, honoured as aliases for one release.
REGISTRY_SCOPES: tuple[str, str, str] = (
    "mcp-registry:read",
    "mcp-registry:write",
    "mcp-registry:admin",
)
OLD_REGISTRY_SCOPES: tuple[str, str, str] = ("registry:read", "registry:write", "registry:admin")
_OLD_READ_PREFIX = OLD_REGISTRY_SCOPES[0] + ":"
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,200}")
_GROUP_PART = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,255}")


class RegistryScopeNames(BaseModel):
    """The names of the registry's scopes (``[registry.scope_names]``). Scopes say which types
    of operation a caller may do (registry authorization document, "Registry-Specific Scopes";
    G03); which entries it may see and change is decided per entry.

    Inside bastion a scope is known by its role, the default name of its kind
    (:data:`REGISTRY_SCOPES`, ``<read>:<group>`` for a finer read scope): :meth:`role` turns a
    name from a token into its role, :meth:`name_of` a role into the configured name. The old
    names ``registry:read|write|admin`` and ``registry:read:<group>`` stand for the same roles
    for one release, unless configured as names themselves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    read: str = Field(REGISTRY_SCOPES[0], description="Scope to list and read entries.")
    write: str = Field(
        REGISTRY_SCOPES[1], description="Scope to publish, update and delete one's entries."
    )
    admin: str = Field(
        REGISTRY_SCOPES[2],
        description="Scope to change status and others' entries (for registry.admins only).",
    )

    @field_validator("read", "write", "admin")
    @classmethod
    def _token(cls, value: str) -> str:
        if not _SCOPE_TOKEN.fullmatch(value):
            raise ValueError(
                f"{value!r} is not one scope-token (RFC 6749 §3.3: 1-200 printable ASCII "
                'characters without space, " or \\)'
            )
        return value

    @model_validator(mode="after")
    def _distinct(self) -> RegistryScopeNames:
        names = self.names
        if len(set(names)) != len(names):
            raise ValueError(f"read, write and admin must be three different scopes; got {names}")
        for role, name in zip(_KINDS, names, strict=True):
            for other, default, old in zip(
                _KINDS, REGISTRY_SCOPES, OLD_REGISTRY_SCOPES, strict=True
            ):
                if other != role and name in (default, old):
                    raise ValueError(
                        f"{role} = {name!r} is the default or old name of the {other} scope; "
                        "pick another name"
                    )
            if name.startswith(_OLD_READ_PREFIX) or (
                role != "read" and name.startswith(self.read + ":")
            ):
                raise ValueError(
                    f"{role} = {name!r} has the form of a finer read scope <read>:<group>; "
                    "pick another name"
                )
        return self

    @property
    def names(self) -> tuple[str, str, str]:
        """The configured read, write and admin names."""
        return (self.read, self.write, self.admin)

    def role(self, scope: str) -> str | None:
        """The role ``scope`` stands for (a configured name, an old name, or a finer read scope
        of either); None for any other scope, which grants nothing in the registry."""
        if scope in self.names:
            return REGISTRY_SCOPES[self.names.index(scope)]
        group = group_of(scope, self.read + ":")
        if group is None and scope in OLD_REGISTRY_SCOPES:
            return REGISTRY_SCOPES[OLD_REGISTRY_SCOPES.index(scope)]
        if group is None:
            group = group_of(scope, _OLD_READ_PREFIX)
        return None if group is None else f"{REGISTRY_SCOPES[0]}:{group}"

    def name_of(self, role: str) -> str:
        """The configured name of ``role`` (any other string unchanged)."""
        if role in REGISTRY_SCOPES:
            return self.names[REGISTRY_SCOPES.index(role)]
        group = group_of(role, REGISTRY_SCOPES[0] + ":")
        return role if group is None else f"{self.read}:{group}"

    def is_old(self, scope: str) -> bool:
        """Whether ``scope`` is an old name (an alias for this release), not a configured one."""
        if scope in self.names or group_of(scope, self.read + ":") is not None:
            return False
        return scope in OLD_REGISTRY_SCOPES or group_of(scope, _OLD_READ_PREFIX) is not None

    def renamed(self, scope: str) -> str:
        """The configured name for an old name; any other scope unchanged."""
        role = self.role(scope) if self.is_old(scope) else None
        return scope if role is None else self.name_of(role)


_KINDS = ("read", "write", "admin")


def group_of(scope: str, prefix: str) -> str | None:
    """The <group> of ``scope`` when it is ``<prefix><group>`` (a finer read scope), else None."""
    rest = scope[len(prefix) :] if scope.startswith(prefix) else None
    return rest if rest is not None and _GROUP_PART.fullmatch(rest) else None


__all__ = ["OLD_REGISTRY_SCOPES", "REGISTRY_SCOPES", "RegistryScopeNames", "group_of"]
