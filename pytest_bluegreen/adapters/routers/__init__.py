"""Traffic routers: HAProxy's runtime API, one instance or every replica; the registry."""
