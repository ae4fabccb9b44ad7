"""One module per CLI command: its parser next to its handler (``register(subparsers)``)."""
