"""Users' load across the switch: Locust in a process of its own; the registry."""
