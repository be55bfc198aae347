"""The deploy itself: settings, colours, state, lock, record and the deployment's decisions.

Nothing here imports an adapter: the deployment talks to the outside through the Protocols of
:mod:`pytest_bluegreen.core.ports`, so each decision is unit-tested with fakes.
"""
