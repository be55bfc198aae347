"""Schema changes a release can carry, switched on by ``APTOS_MIGRATIONS`` for the tool's tests.

Each variant is a tiny app whose only content is a migration on the aptos tables, so the same
image can play a release with an additive (expand) migration or with a destructive one that the
colour still live cannot survive. Unset in a real deployment.
"""

VARIANTS = {
    "add-column": "release_variants.add_column",
    "drop-column": "release_variants.drop_column",
}
