"""The ``inas`` command line (installed as the ``inas_cli`` package)."""
