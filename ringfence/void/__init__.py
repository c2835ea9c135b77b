"""Void processes: programs started in an empty root with only what they need added back.

Owns the pieces that decide what goes into a void: the ELF closure (``void.elf``: which files
and symlinks a dynamically linked program needs, computed by reading ELF headers and
``/etc/ld.so.cache`` the way glibc's loader would, see ``void.ldcache``), and the multi-part
void specs with their pipes, socket pairs and passed file descriptors.

Must never run a program to learn about it (no ``ldd`` on untrusted files) and must never touch
the kernel while computing what a void contains: computing is pure, the runtime executes.
"""
