"""A second process using the same token file, for the storage tests.

python -m tests.client.storage_worker write <file> <prefix> <count>
    store <count> token sets for servers <prefix>-0 … under the file's lock
python -m tests.client.storage_worker hold <file>
    take the lock, print "locked", keep it until stdin closes
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bastion.client.models import TokenSet
from bastion.client.storage import FileStorage


def tokens(server: str) -> TokenSet:
    return TokenSet(
        server_url=server,
        resource=server,
        issuer="https://as.example.com",
        token_endpoint="https://as.example.com/token",
        client_id="c",
        grant_type="authorization_code",
        access_token=f"at-{server}",
        refresh_token=f"rt-{server}",
    )


async def write(path: Path, prefix: str, count: int) -> None:
    storage = FileStorage(path)
    for index in range(count):
        await storage.set_tokens(tokens(f"https://{prefix}-{index}.example/mcp"))


async def hold(path: Path) -> None:
    storage = FileStorage(path)
    async with storage.lock():
        print("locked", flush=True)
        await asyncio.to_thread(sys.stdin.read)


def main() -> None:
    command, path = sys.argv[1], Path(sys.argv[2])
    if command == "write":
        asyncio.run(write(path, sys.argv[3], int(sys.argv[4])))
    else:
        asyncio.run(hold(path))


if __name__ == "__main__":
    main()
