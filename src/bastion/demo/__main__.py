"""``python -m bastion.demo``: the demo MCP server over stdio."""

from bastion.demo.server import build_demo_server

__all__: list[str] = []

if __name__ == "__main__":
    build_demo_server().run("stdio")
