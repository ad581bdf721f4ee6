"""The doctor diagnoses the client tests' running stack (AS, resource server, user)."""

from tests.client.conftest import stack, start_stack

__all__ = ["stack", "start_stack"]
