from ringfence.cli import entry

entry()
