"""Named groups of system calls with systemd's meaning, and the names ringfence knows.

Owns: the ``@group`` table used by ``SystemCallFilter`` (same names and members as systemd's
src/shared/seccomp-util.c, see ``systemd-analyze syscall-filter``), the set of every system call
name a filter may mention (``KNOWN``), and the numbers of recent system calls that an older
libseccomp cannot resolve by name. Pure data: this module must never load libseccomp, call the
kernel or import anything beyond the standard library's builtins (it is on the start-up path).

Members that do not exist on an architecture (``mmap2`` on x86-64, ``rtas`` anywhere but
powerpc) are listed on purpose, as in systemd: the filter builder resolves each name per ABI and
skips the ones an ABI lacks.
"""

from __future__ import annotations

# Group table. Values are whitespace-separated names; "@x" entries nest another group.
# Deviations from systemd (v255-era table) are marked "ringfence:" and only ever add members
# that belong to the group's stated meaning on a newer kernel.
_GROUPS: dict[str, tuple[str, str]] = {
    "@default": (
        "System calls that are always permitted",
        """arch_prctl brk cacheflush clock_getres clock_getres_time64 clock_gettime
        clock_gettime64 clock_nanosleep clock_nanosleep_time64 execve exit exit_group futex
        futex_time64 get_robust_list
        get_thread_area getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups
        getgroups32 getpgid getpgrp getpid getppid getrandom getresgid getresgid32 getresuid
        getresuid32 getrlimit getsid gettid gettimeofday getuid getuid32 membarrier mmap mmap2
        mprotect munmap nanosleep pause prlimit64 restart_syscall rseq rt_sigreturn
        sched_getaffinity sched_yield set_robust_list set_thread_area set_tid_address set_tls
        sigreturn time ugetrlimit""",
    ),
    "@aio": (
        "Asynchronous IO",
        """io_cancel io_destroy io_getevents io_pgetevents io_pgetevents_time64 io_setup
        io_submit io_uring_enter io_uring_register io_uring_setup""",
    ),
    "@basic-io": (
        "Basic IO",
        """_llseek close close_range dup dup2 dup3 lseek pread64 preadv preadv2 pwrite64 pwritev
        pwritev2 read readv write writev""",
    ),
    "@chown": (
        "Change ownership of files and directories",
        "chown chown32 fchown fchown32 fchownat lchown lchown32",
    ),
    "@clock": (
        "Change the system time",
        """adjtimex clock_adjtime clock_adjtime64 clock_settime clock_settime64 settimeofday""",
    ),
    "@cpu-emulation": (
        "System calls for CPU emulation functionality",
        "modify_ldt subpage_prot switch_endian vm86 vm86old",
    ),
    "@debug": (
        "Debugging, performance monitoring and tracing functionality",
        """lookup_dcookie perf_event_open pidfd_getfd ptrace rtas s390_runtime_instr
        sys_debug_setcontext""",
    ),
    "@file-system": (
        "File system operations",
        # ringfence: fchmodat2 (6.6) and the *xattrat calls (6.13) are file-system operations
        # that systemd's newer tables list too.
        """access chdir chmod close creat faccessat faccessat2 fallocate fchdir fchmod fchmodat
        fchmodat2 fcntl fcntl64 fgetxattr flistxattr fremovexattr fsetxattr fstat fstat64
        fstatat64 fstatfs fstatfs64 ftruncate ftruncate64 futimesat getcwd getdents getdents64
        getxattr getxattrat inotify_add_watch inotify_init inotify_init1 inotify_rm_watch
        lgetxattr link linkat listxattr listxattrat llistxattr lremovexattr lsetxattr lstat
        lstat64 mkdir mkdirat mknod mknodat newfstatat oldfstat oldlstat oldstat open openat
        openat2 readlink readlinkat removexattr removexattrat rename renameat renameat2 rmdir
        setxattr setxattrat stat stat64 statfs statfs64 statx symlink symlinkat truncate
        truncate64 unlink unlinkat utime utimensat utimensat_time64 utimes""",
    ),
    "@io-event": (
        "Event loop system calls",
        """_newselect epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2
        epoll_wait epoll_wait_old eventfd eventfd2 poll ppoll ppoll_time64 pselect6
        pselect6_time64 select""",
    ),
    "@ipc": (
        "SysV IPC, POSIX Message Queues or other IPC",
        """ipc memfd_create mq_getsetattr mq_notify mq_open mq_timedreceive
        mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink msgctl msgget msgrcv
        msgsnd pipe pipe2 process_madvise process_vm_readv process_vm_writev semctl semget semop
        semtimedop semtimedop_time64 shmat shmctl shmdt shmget""",
    ),
    "@keyring": ("Kernel keyring access", "add_key keyctl request_key"),
    "@memlock": ("Memory locking control", "mlock mlock2 mlockall munlock munlockall"),
    "@module": (
        "Loading and unloading of kernel modules",
        "delete_module finit_module init_module",
    ),
    "@mount": (
        "Mounting and unmounting of file systems",
        # ringfence: open_tree_attr (6.15) clones mount trees like open_tree.
        """chroot fsconfig fsmount fsopen fspick mount mount_setattr move_mount open_tree
        open_tree_attr pivot_root umount umount2""",
    ),
    "@network-io": (
        "Network or Unix socket IO, should not be needed if not network facing",
        """accept accept4 bind connect getpeername getsockname getsockopt listen recv recvfrom
        recvmmsg recvmmsg_time64 recvmsg send sendmmsg sendmsg sendto setsockopt shutdown socket
        socketcall socketpair""",
    ),
    "@obsolete": (
        "Unusual, obsolete or unimplemented system calls",
        """_sysctl afs_syscall bdflush break create_module ftime get_kernel_syms getpmsg gtty idle
        lock mpx prof profil putpmsg query_module security sgetmask ssetmask stime stty sysfs
        tuxcall ulimit uselib ustat vserver""",
    ),
    "@pkey": ("System calls used for memory protection keys", "pkey_alloc pkey_free pkey_mprotect"),
    "@privileged": (
        "All system calls which need super-user capabilities",
        """@chown @clock @module @raw-io @reboot @swap _sysctl acct bpf capset chroot
        fanotify_init fanotify_mark nfsservctl open_by_handle_at pivot_root quotactl
        quotactl_fd setdomainname setfsuid setfsuid32 setgroups setgroups32 sethostname
        setresuid setresuid32 setreuid setreuid32 setuid setuid32 vhangup""",
    ),
    "@process": (
        "Process control, execution, namespacing operations",
        """capget clone clone3 execveat fork getrusage kill pidfd_open pidfd_send_signal prctl
        rt_sigqueueinfo rt_tgsigqueueinfo setns swapcontext tgkill times tkill unshare vfork wait4
        waitid waitpid""",
    ),
    "@raw-io": (
        "Raw I/O port access",
        """ioperm iopl pciconfig_iobase pciconfig_read pciconfig_write s390_pci_mmio_read
        s390_pci_mmio_write""",
    ),
    "@reboot": ("Reboot and reboot preparation/kexec", "kexec_file_load kexec_load reboot"),
    "@resources": (
        "Alter resource settings",
        """ioprio_set mbind migrate_pages move_pages nice sched_setaffinity sched_setattr
        sched_setparam sched_setscheduler set_mempolicy set_mempolicy_home_node setpriority
        setrlimit""",
    ),
    "@sandbox": (
        "Sandbox functionality",
        "landlock_add_rule landlock_create_ruleset landlock_restrict_self seccomp",
    ),
    "@setuid": (
        "Operations for changing user/group credentials",
        """setgid setgid32 setgroups setgroups32 setregid setregid32 setresgid setresgid32
        setresuid setresuid32 setreuid setreuid32 setuid setuid32""",
    ),
    "@signal": (
        "Process signal handling",
        """rt_sigaction rt_sigpending rt_sigprocmask rt_sigsuspend rt_sigtimedwait
        rt_sigtimedwait_time64 sigaction sigaltstack signal signalfd signalfd4 sigpending
        sigprocmask sigsuspend""",
    ),
    "@swap": ("Enable/disable swap devices", "swapoff swapon"),
    "@sync": (
        "Synchronize files and memory to storage",
        "fdatasync fsync msync sync sync_file_range sync_file_range2 syncfs",
    ),
    "@system-service": (
        "General system service operations",
        """@aio @basic-io @chown @default @file-system @io-event @ipc @keyring @memlock
        @network-io @process @resources @setuid @signal @sync @timer capget capset
        copy_file_range fadvise64 fadvise64_64 flock get_mempolicy getcpu getpriority ioctl
        ioprio_get kcmp madvise mremap name_to_handle_at oldolduname olduname personality
        readahead readdir remap_file_pages sched_get_priority_max sched_get_priority_min
        sched_getattr sched_getparam sched_getscheduler sched_rr_get_interval
        sched_rr_get_interval_time64 sched_yield sendfile sendfile64 setfsgid setfsgid32
        setfsuid setfsuid32 setpgid setsid splice sysinfo tee umask uname userfaultfd
        vmsplice""",
    ),
    "@timer": (
        "Schedule operations by time",
        """alarm getitimer setitimer timer_create timer_delete timer_getoverrun timer_gettime
        timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime
        timerfd_gettime64 timerfd_settime timerfd_settime64 times""",
    ),
}

# Every system call name a filter may mention: the union of libseccomp 2.5's tables for all of
# its architectures, the group members above and the recent calls in _UNIFIED_NUMBERS.
KNOWN: frozenset[str] = frozenset(
    {
        "_llseek", "_newselect", "_sysctl", "accept", "accept4", "access", "acct", "add_key",
        "adjtimex", "afs_syscall", "alarm", "arch_prctl", "arm_fadvise64_64", "arm_sync_file_range",
        "bdflush", "bind", "bpf", "break", "brk", "cachectl", "cacheflush", "cachestat", "capget",
        "capset", "chdir", "chmod", "chown", "chown32", "chroot", "clock_adjtime", "clock_adjtime64",
        "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
        "clock_nanosleep_time64", "clock_settime", "clock_settime64", "clone", "clone3", "close",
        "close_range", "connect", "copy_file_range", "creat", "create_module", "delete_module", "dup",
        "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
        "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat",
        "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate",
        "fanotify_init", "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown",
        "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "file_getattr",
        "file_setattr", "finit_module", "flistxattr", "flock", "fork", "fremovexattr", "fsconfig",
        "fsetxattr", "fsmount", "fsopen", "fspick", "fstat", "fstat64", "fstatat64", "fstatfs",
        "fstatfs64", "fsync", "ftime", "ftruncate", "ftruncate64", "futex", "futex_requeue",
        "futex_time64", "futex_wait", "futex_waitv", "futex_wake", "futimesat", "get_kernel_syms",
        "get_mempolicy", "get_robust_list", "get_thread_area", "getcpu", "getcwd", "getdents",
        "getdents64", "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32",
        "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid",
        "getpmsg", "getppid", "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid",
        "getresuid32", "getrlimit", "getrusage", "getsid", "getsockname", "getsockopt", "gettid",
        "gettimeofday", "getuid", "getuid32", "getxattr", "getxattrat", "gtty", "idle", "init_module",
        "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel",
        "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "io_setup", "io_submit",
        "io_uring_enter", "io_uring_register", "io_uring_setup", "ioctl", "ioperm", "iopl",
        "ioprio_get", "ioprio_set", "ipc", "kcmp", "kexec_file_load", "kexec_load", "keyctl", "kill",
        "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32",
        "lgetxattr", "link", "linkat", "listen", "listmount", "listxattr", "listxattrat", "llistxattr",
        "lock", "lookup_dcookie", "lremovexattr", "lseek", "lsetxattr", "lsm_get_self_attr",
        "lsm_list_modules", "lsm_set_self_attr", "lstat", "lstat64", "madvise", "map_shadow_stack",
        "mbind", "membarrier", "memfd_create", "memfd_secret", "migrate_pages", "mincore", "mkdir",
        "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "modify_ldt",
        "mount", "mount_setattr", "move_mount", "move_pages", "mprotect", "mpx", "mq_getsetattr",
        "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend",
        "mq_timedsend_time64", "mq_unlink", "mremap", "mseal", "msgctl", "msgget", "msgrcv", "msgsnd",
        "msync", "multiplexer", "munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep",
        "newfstatat", "nfsservctl", "nice", "oldfstat", "oldlstat", "oldolduname", "oldstat",
        "olduname", "open", "open_by_handle_at", "open_tree", "open_tree_attr", "openat", "openat2",
        "pause", "pciconfig_iobase", "pciconfig_read", "pciconfig_write", "perf_event_open",
        "personality", "pidfd_getfd", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pivot_root",
        "pkey_alloc", "pkey_free", "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl",
        "pread64", "preadv", "preadv2", "prlimit64", "process_madvise", "process_mrelease",
        "process_vm_readv", "process_vm_writev", "prof", "profil", "pselect6", "pselect6_time64",
        "ptrace", "putpmsg", "pwrite64", "pwritev", "pwritev2", "query_module", "quotactl",
        "quotactl_fd", "read", "readahead", "readdir", "readlink", "readlinkat", "readv", "reboot",
        "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages",
        "removexattr", "removexattrat", "rename", "renameat", "renameat2", "request_key",
        "restart_syscall", "riscv_flush_icache", "rmdir", "rseq", "rt_sigaction", "rt_sigpending",
        "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
        "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "rtas", "s390_guarded_storage",
        "s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr", "s390_sthyi",
        "sched_get_priority_max", "sched_get_priority_min", "sched_getaffinity", "sched_getattr",
        "sched_getparam", "sched_getscheduler", "sched_rr_get_interval",
        "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr", "sched_setparam",
        "sched_setscheduler", "sched_yield", "seccomp", "security", "select", "semctl", "semget",
        "semop", "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg",
        "sendmsg", "sendto", "set_mempolicy", "set_mempolicy_home_node", "set_robust_list",
        "set_thread_area", "set_tid_address", "set_tls", "setdomainname", "setfsgid", "setfsgid32",
        "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "sethostname",
        "setitimer", "setns", "setpgid", "setpriority", "setregid", "setregid32", "setresgid",
        "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit", "setsid",
        "setsockopt", "settimeofday", "setuid", "setuid32", "setxattr", "setxattrat", "sgetmask",
        "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaction", "sigaltstack", "signal",
        "signalfd", "signalfd4", "sigpending", "sigprocmask", "sigreturn", "sigsuspend", "socket",
        "socketcall", "socketpair", "splice", "spu_create", "spu_run", "ssetmask", "stat", "stat64",
        "statfs", "statfs64", "statmount", "statx", "stime", "stty", "subpage_prot", "swapcontext",
        "swapoff", "swapon", "switch_endian", "symlink", "symlinkat", "sync", "sync_file_range",
        "sync_file_range2", "syncfs", "sys_debug_setcontext", "syscall", "sysfs", "sysinfo", "syslog",
        "sysmips", "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun",
        "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "timerfd",
        "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
        "timerfd_settime64", "times", "tkill", "truncate", "truncate64", "tuxcall", "ugetrlimit",
        "ulimit", "umask", "umount", "umount2", "uname", "unlink", "unlinkat", "unshare", "uselib",
        "userfaultfd", "ustat", "utime", "utimensat", "utimensat_time64", "utimes", "vfork", "vhangup",
        "vm86", "vm86old", "vmsplice", "vserver", "wait4", "waitid", "waitpid", "write", "writev",
    }
)  # fmt: skip

# Calls added since Linux 5.1 have the same number on every architecture ringfence runs on
# (x86-64, i386, x32 with __X32_SYSCALL_BIT, arm64, arm): asm/unistd_64.h, asm/unistd_32.h,
# asm-generic/unistd.h. An older libseccomp may not know their names; the filter builder falls
# back to these numbers so that a deny rule is never silently dropped.
_UNIFIED_NUMBERS: dict[str, int] = {
    "pidfd_send_signal": 424, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "pidfd_open": 434, "clone3": 435,
    "close_range": 436, "openat2": 437, "pidfd_getfd": 438, "faccessat2": 439,
    "process_madvise": 440, "epoll_pwait2": 441, "mount_setattr": 442, "quotactl_fd": 443,
    "landlock_create_ruleset": 444, "landlock_add_rule": 445, "landlock_restrict_self": 446,
    "memfd_secret": 447, "process_mrelease": 448, "futex_waitv": 449,
    "set_mempolicy_home_node": 450, "cachestat": 451, "fchmodat2": 452,
    "map_shadow_stack": 453, "futex_wake": 454, "futex_wait": 455, "futex_requeue": 456,
    "statmount": 457, "listmount": 458, "lsm_get_self_attr": 459, "lsm_set_self_attr": 460,
    "lsm_list_modules": 461, "mseal": 462, "setxattrat": 463, "getxattrat": 464,
    "listxattrat": 465, "removexattrat": 466, "open_tree_attr": 467, "file_getattr": 468,
    "file_setattr": 469,
}  # fmt: skip

# The newest system call number ringfence knows (Linux 6.18). ``DenyUnknownSystemCalls``
# answers ENOSYS above it, so a call added to a later kernel is refused until it is reviewed.
HIGHEST_KNOWN_NR = 469


def fallback_number(name: str) -> int | None:
    """The number shared by all supported ABIs for a call added since Linux 5.1, else None."""
    return _UNIFIED_NUMBERS.get(name)


def group_names() -> tuple[str, ...]:
    """All group names, ``@known`` included, sorted."""
    return tuple(sorted([*_GROUPS, "@known"]))


def group_help(name: str) -> str:
    """systemd's one-line description of a group."""
    if name == "@known":
        return "All system calls known to ringfence"
    return _GROUPS[name][0]


def expand(name: str) -> frozenset[str]:
    """The system call names a group stands for (nested groups resolved); a plain name is
    returned as itself. Raises KeyError for an unknown group."""
    if not name.startswith("@"):
        return frozenset((name,))
    if name == "@known":
        return KNOWN
    out: set[str] = set()
    for member in _GROUPS[name][1].split():
        out |= expand(member)
    return frozenset(out)
