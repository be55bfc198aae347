"""What a deploy tells the outside: the secret policy, event log, webhooks, HTML, metrics."""
