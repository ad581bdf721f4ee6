"""The access-rule decision (bastion.access.rules), pure: who is refused first, then who gets
what."""

from __future__ import annotations

import pytest

from bastion.access.rules import (
    AccessRule,
    Person,
    RuleError,
    check_scopes,
    check_who,
    decide_machine,
    decide_person,
)

LEDGER = "https://mcp.example.com/ledger"
NOTES = "https://mcp.example.com/notes"
ALICE = Person("alice", frozenset({"finance"}), "alice@example.com", frozenset({"local"}))
BOB = Person("bob", frozenset({"sales"}), "bob@partner.example.org", frozenset({"github"}))


def test_a_person_no_rule_admits_is_refused_with_nothing_granted() -> None:
    rules = [AccessRule(LEDGER, "group:finance")]
    decision = decide_person(rules, LEDGER, BOB, ["mcp:tools"])
    assert not decision.allowed
    assert decision.scopes == frozenset()
    assert decision.withheld == {"mcp:tools"}


def test_machine_rules_never_admit_a_person() -> None:
    """A client: rule restricts nothing about people and admits no person."""
    rules = [AccessRule(LEDGER, "client:bob")]
    decision = decide_person(rules, LEDGER, BOB, ["mcp:tools"])
    assert decision.allowed and not decision.restricted


def test_a_resource_without_rules_about_people_is_open_to_every_signed_in_person() -> None:
    decision = decide_person([AccessRule(NOTES, "group:x")], LEDGER, BOB, ["a", "b"])
    assert decision.allowed and not decision.restricted
    assert decision.scopes == {"a", "b"}


@pytest.mark.parametrize(
    ("who", "person", "admitted"),
    [
        ("*", BOB, True),
        ("user:alice", ALICE, True),
        ("user:alice", BOB, False),
        ("group:finance", ALICE, True),
        ("group:finance", BOB, False),
        ("domain:example.com", ALICE, True),
        ("domain:example.com", BOB, False),
        ("domain:*.example.org", BOB, True),
        ("domain:*.example.org", ALICE, False),
        ("idp:github", BOB, True),
        ("idp:github", ALICE, False),
        ("idp:local", ALICE, True),
    ],
)
def test_each_kind_of_selector(who: str, person: Person, admitted: bool) -> None:
    decision = decide_person([AccessRule(LEDGER, who)], LEDGER, person, ["mcp:tools"])
    assert decision.allowed is admitted


def test_scopes_a_person_may_not_have_are_withheld_not_refused() -> None:
    """Everyone in finance may use the tools; only editors may write."""
    rules = [
        AccessRule(LEDGER, "group:finance", ("mcp:tools",)),
        AccessRule(LEDGER, "group:editors", ("mcp:tools", "notes:write")),
    ]
    decision = decide_person(rules, LEDGER, ALICE, ["mcp:tools", "notes:write"])
    assert decision.allowed
    assert decision.scopes == {"mcp:tools"}
    assert decision.withheld == {"notes:write"}
    editor = Person("eve", frozenset({"finance", "editors"}))
    both = decide_person(rules, LEDGER, editor, ["mcp:tools", "notes:write"])
    assert both.scopes == {"mcp:tools", "notes:write"} and not both.withheld


def test_a_rule_on_every_resource_applies_to_each() -> None:
    rules = [AccessRule("*", "domain:example.com")]
    assert not decide_person(rules, LEDGER, BOB, []).allowed
    assert decide_person(rules, NOTES, ALICE, []).allowed


def test_a_machine_client_without_a_rule_gets_nothing() -> None:
    decision = decide_machine([AccessRule(LEDGER, "*")], LEDGER, "robot", [], ["mcp:tools"])
    assert not decision.allowed and not decision.rules


def test_a_machine_client_gets_only_the_scopes_of_its_rule() -> None:
    rules = [AccessRule(LEDGER, "client:robot", ("mcp:tools",))]
    assert decide_machine(rules, LEDGER, "robot", [], ["mcp:tools", "x"]).scopes == {"mcp:tools"}
    beyond = decide_machine(rules, LEDGER, "robot", ["x"], ["mcp:tools", "x"])
    assert not beyond.allowed and beyond.withheld == {"x"}
    assert not decide_machine(rules, NOTES, "robot", [], ["mcp:tools"]).allowed
    every = [AccessRule("*", "client:robot")]
    assert decide_machine(every, NOTES, "robot", [], ["a", "b"]).scopes == {"a", "b"}


@pytest.mark.parametrize("who", ["", "alice", "team:x", "user:", "group:a b", "domain:@x.com"])
def test_a_selector_that_does_not_say_who_is_refused(who: str) -> None:
    with pytest.raises(RuleError):
        check_who(who)


def test_scopes_of_a_rule_are_checked() -> None:
    assert check_scopes(["b", "a", "a"]) == ("a", "b")
    for bad in ([], ["*", "a"], ['a"b']):
        with pytest.raises(RuleError):
            check_scopes(bad)


def test_a_decision_grants_something_unless_refused_or_everything_asked_is_withheld() -> None:
    rules = [AccessRule(LEDGER, "*", ("mcp:tools",))]
    assert decide_person(rules, LEDGER, BOB, ["mcp:tools", "x"]).grants_something
    assert not decide_person(rules, LEDGER, BOB, ["x"]).grants_something
    assert decide_person(rules, LEDGER, BOB, []).grants_something
    assert not decide_person([AccessRule(LEDGER, "user:alice")], LEDGER, BOB, []).grants_something
