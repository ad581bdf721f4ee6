"""The quickstart's demo MCP server, built with the official `mcp` SDK."""
