"""The kernel layer: one small ctypes module per kernel concern.

Each module wraps the syscalls of one concern (user namespaces, mounts, capabilities, seccomp,
Landlock, ...) and raises :class:`ringfence.errors.KernelError` naming the syscall and errno.
No module here reaches into another's concern, and none imports anything above this layer.
"""
