"""The `week1` subcommands that do more than print: each imports the frameworks it drives at call
time."""
