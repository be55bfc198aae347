"""Container engines: Compose on one host, a Docker Swarm stack; the engine registry."""
