"""``bluegreen init`` and ``bluegreen doctor``: adopting the plugin on a one-colour Compose file.

``compose_model`` reads the team's services and decides what each is, ``override`` builds the
blue-green layer (a Compose override), ``haproxy_cfg`` and ``settings_toml`` render HAProxy's
configuration and the settings, all pure;
``init`` and ``doctor`` are the two commands, which call Compose and touch files.
"""
