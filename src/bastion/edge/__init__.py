"""The ASGI edge every bastion server shares: one bounded read of a request body, kept in the
scope for whatever runs after it (:mod:`~bastion.edge.body`), one JSON-RPC reader that refuses
repeated members (:mod:`~bastion.edge.jsonrpc`), and the JSON answers (:mod:`~bastion.edge.asgi`).
It stands below the resource middleware and the gateway and imports neither."""
