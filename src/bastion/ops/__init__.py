"""What operators run bastion with: health and readiness answers, Prometheus metrics, request
ids and structured logs. Every listener's app takes these from here; none of them reads
settings of an app it serves."""
