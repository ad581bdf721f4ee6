"""Who may obtain which token: access rules per resource, applied by the authorization server.

- :mod:`bastion.access.rules`: the rules and the decision, pure (no I/O);
- :mod:`bastion.access.policy`: the rules as the authorization server keeps them (loaded from the
  database, cached, refreshed on change) and the facts about a person they are matched against.
"""

from bastion.access.rules import AccessRule, Decision, Person, decide_machine, decide_person

__all__ = ["AccessRule", "Decision", "Person", "decide_machine", "decide_person"]
