"""The migration gate (``bluegreen:migration``): the new release's migrations on a copy, first."""
