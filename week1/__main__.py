from week1.cli import entry

entry()
