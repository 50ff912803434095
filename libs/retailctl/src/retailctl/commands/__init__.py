"""One module per noun; each has `register(commands)` adding its subcommands to the parser."""
