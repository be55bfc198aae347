"""The adapters to external systems, one module each, behind the Protocols of the core.

Compose, the Docker engine, HAProxy's runtime API, TLS, PostgreSQL, Locust and testinfra: the
deployment in :mod:`pytest_bluegreen.core` knows them only as :mod:`pytest_bluegreen.core.ports`.
"""
