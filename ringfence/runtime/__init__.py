"""The runtime: launcher (host side) -> PID 1 init (inside) -> payload.

Only this package executes a Plan. See launcher.py for the process tree.
"""
