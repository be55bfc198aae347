"""``bluegreen init`` and ``bluegreen doctor``: adopting the plugin on a one-colour Compose file.

``source`` reads the team's settings and Compose files, ``compose_model`` decides what each
service is, ``override`` builds the
blue-green layer (a Compose override), ``haproxy_cfg`` and ``settings_toml`` render HAProxy's
configuration and the settings, all pure;
``init`` and ``doctor`` are the two commands, which call Compose and touch files.
"""
