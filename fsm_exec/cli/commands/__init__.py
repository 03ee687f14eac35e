"""One module per ``fsm-exec`` command: each adds its subparser (``add_parser``) and runs it."""
