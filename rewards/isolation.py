"""The isolation layers of the code sandbox: what runs in the child between fork and exec, and the sweep.

``ChildSetup`` is the ``preexec_fn`` that ``rewards.sandbox.run_python`` hands to ``subprocess.Popen``.
It runs in the forked child (already a new session and process-group leader, cwd = the run's fresh
work dir) and applies, in this order:

====================  ==================================================================================
layer                 what it enforces
====================  ==================================================================================
``rlimits``           RLIMIT_CPU, RLIMIT_AS (memory), RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_NPROC,
                      RLIMIT_CORE=0. Mandatory: a failure aborts the run (``sandbox_error``).
``netns``             ``unshare(CLONE_NEWNET|CLONE_NEWNS)`` through libc (ctypes; ``os.unshare`` is
                      3.12+): an empty network namespace whose loopback is down, so neither the internet
                      nor a server listening on the host's localhost can be reached (ENETUNREACH).
                      Needs root; otherwise a user namespace is tried first (``CLONE_NEWUSER``).
``private_tmp``       In that mount namespace: a private tmpfs of ``file_mb`` over every world-writable
                      directory (/tmp, /var/tmp, /dev/shm, /run/lock), so writes there vanish with the
                      run, and another over the run's work dir (with a copy of the program), so writing
                      file after file cannot fill the disk.
``uid``               Root only: drop to a fresh random unprivileged uid/gid for this run (if the
                      interpreter sits under a directory others cannot enter, e.g. /root, it is first
                      re-exposed in the mount namespace; without that the layer is skipped). Then the code
                      cannot write root-owned files (the repo), cannot signal or ptrace the parent or any
                      other process (``os.kill(os.getppid(), 9)`` gets EPERM), cannot read other
                      processes' /proc/<pid>/environ, RLIMIT_NPROC counts only this run's processes
                      (root ignores RLIMIT_NPROC), and every process it leaves behind, even one that
                      left the process group with ``setsid()``, is found and killed by ``kill_uid``.
``pdeathsig``         PR_SET_PDEATHSIG(SIGKILL): the program dies if the thread that launched it dies.
``seccomp``           If PyPI ``pyseccomp`` and the system ``libseccomp2`` are present: EPERM for
                      ``socket`` (all families, so also unix sockets on the filesystem), connect/bind/
                      listen/accept, ptrace and process_vm_*, mount/unshare/setns/chroot, io_uring (its
                      ops bypass seccomp), bpf/perf/userfaultfd/keyctl/module/kexec/reboot/swap, and
                      kill/tkill/tgkill aimed at the parent, at the parent's process group or at pid -1.
====================  ==================================================================================

Not enforced: reading world-readable files (the repo, /etc); total memory across the run's processes
(RLIMIT_AS is per process, so the bound is ``memory_mb × max_processes``; cgroups would fix this and are
not used because hosts differ between v1 and v2); CPU time summed over processes (RLIMIT_CPU is per
process). Without root, the ``uid`` layer is absent: a process that calls ``setsid()`` can outlive the
run, and same-uid processes other than the parent can be signalled (seccomp still guards the parent).
If the launching process is killed mid-run (a verifier worker past its deadline) no sweep happens: the
program dies by ``pdeathsig``, its busy descendants by RLIMIT_CPU, but idle ones linger.

The child reports which layers took effect as one byte (a bit mask over ``LAYERS``) on a pipe, so each
``SandboxResult`` says what protected it. Code here runs after fork in a possibly multithreaded parent:
plain syscalls (os, resource, pre-resolved ctypes) and small Python only; no imports, logging or locks.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import secrets
import signal
from dataclasses import dataclass

LAYERS = ("rlimits", "netns", "private_tmp", "uid", "pdeathsig", "seccomp")
_BIT = {name: 1 << i for i, name in enumerate(LAYERS)}

_CLONE_NEWNS, _CLONE_NEWUSER, _CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38
#: Every world-writable directory of a Debian/Ubuntu base system; each gets a private tmpfs.
_WRITABLE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
#: Fresh uids are drawn from [2^30, 2^31): far above real accounts and the usual subuid ranges
#: (100000-165535 per user), so a collision with a real process owner is practically impossible.
_UID_LOW, _UID_SPAN = 1 << 30, 1 << 30
#: Syscalls denied outright (EPERM) by the seccomp layer; see the module docstring for why each.
_DENIED_SYSCALLS = (
    "socket", "connect", "bind", "listen", "accept", "accept4",
    "ptrace", "process_vm_readv", "process_vm_writev",
    "mount", "umount2", "unshare", "setns", "pivot_root", "chroot",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "init_module", "finit_module", "delete_module", "kexec_load", "reboot", "swapon", "swapoff",
)  # fmt: skip

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


@dataclass(frozen=True)
class Limits:
    """Per-run resource limits (all enforced through setrlimit in the child).

    Attributes:
        cpu_s: CPU seconds (RLIMIT_CPU soft; the hard limit one second later kills with SIGKILL).
        memory_mb: address-space cap per process (RLIMIT_AS); Python raises MemoryError beyond it.
        file_mb: largest file the program may write (RLIMIT_FSIZE; also the size of each private tmpfs).
        open_files: open file descriptors (RLIMIT_NOFILE).
        processes: processes+threads of the run's uid (RLIMIT_NPROC; a fork bomb stops here).
    """

    cpu_s: int
    memory_mb: int
    file_mb: int
    open_files: int
    processes: int


def layer_names(mask: int) -> tuple[str, ...]:
    """The names of the layers whose bits are set in ``mask``."""
    return tuple(name for name in LAYERS if mask & _BIT[name])


def fresh_uid() -> int | None:
    """A random unprivileged uid for one run, or None when we cannot switch uid (not root)."""
    return _UID_LOW + secrets.randbelow(_UID_SPAN) if os.geteuid() == 0 else None


def build_seccomp_filter(parent_pid: int, parent_pgid: int):
    """The seccomp filter (built in the parent, loaded in the child), or None without pyseccomp."""
    try:
        import pyseccomp as sc

        filt = sc.SyscallFilter(defaction=sc.ALLOW)
        for name in _DENIED_SYSCALLS:
            filt.add_rule(sc.ERRNO(errno.EPERM), name)
        # pid arguments are C ints: compare the low 32 bits so sign extension cannot matter.
        for target in (parent_pid, -1, -parent_pgid):
            low = target & 0xFFFFFFFF
            filt.add_rule(sc.ERRNO(errno.EPERM), "kill", sc.Arg(0, sc.MASKED_EQ, 0xFFFFFFFF, low))
        for call in ("tkill", "tgkill"):
            filt.add_rule(sc.ERRNO(errno.EPERM), call, sc.Arg(0, sc.MASKED_EQ, 0xFFFFFFFF, parent_pid))
        return filt
    except Exception:  # noqa: BLE001 - missing package or libseccomp: the layer is simply absent
        return None


class ChildSetup:
    """The ``preexec_fn`` of a sandboxed run; see the module docstring for the layers it applies.

    Args:
        limits: resource limits.
        workdir: absolute path of the run's work dir (the child's cwd at this point).
        uid: uid to switch to (root only), or None.
        report_fd: write end of the pipe on which the layer mask is reported.
        seccomp_filter: a ``pyseccomp.SyscallFilter`` to load last, or None.
        hidden: from ``hidden_interpreter``: (ancestor other users cannot traverse, interpreter prefix).
    """

    def __init__(self, limits: Limits, workdir: str, uid: int | None, report_fd: int, seccomp_filter,
                 hidden: tuple[bytes, bytes] | None = None) -> None:
        self.limits, self.workdir, self.uid, self.hidden = limits, workdir.encode(), uid, hidden
        self.report_fd, self.seccomp_filter = report_fd, seccomp_filter
        self.outer_uid, self.outer_gid = os.getuid(), os.getgid()

    def __call__(self) -> None:
        self._set_rlimits()
        mask = _BIT["rlimits"]
        mounted = False
        if self._new_namespaces():
            mask |= _BIT["netns"]
            mounted = self._private_mounts()
            mask |= _BIT["private_tmp"] if mounted else 0
        # Without the interpreter re-exposed (see expose_interpreter) the new uid could not exec it.
        if self.uid is not None and (self.hidden is None or (mounted and self._expose_interpreter())):
            os.setgroups([])
            os.setresgid(self.uid, self.uid, self.uid)
            os.setresuid(self.uid, self.uid, self.uid)
            mask |= _BIT["uid"]
        # After the uid switch: changing credentials clears the parent-death signal.
        if _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            mask |= _BIT["pdeathsig"]
        mask |= _BIT["seccomp"] if self._load_seccomp() else 0
        os.write(self.report_fd, bytes([mask]))

    def _set_rlimits(self) -> None:
        lim, mb = self.limits, 1 << 20
        resource.setrlimit(resource.RLIMIT_CPU, (lim.cpu_s, lim.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (lim.memory_mb * mb, lim.memory_mb * mb))
        resource.setrlimit(resource.RLIMIT_FSIZE, (lim.file_mb * mb, lim.file_mb * mb))
        resource.setrlimit(resource.RLIMIT_NOFILE, (lim.open_files, lim.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        # Without our own uid RLIMIT_NPROC counts every process of the user: leave room for those.
        extra = 0 if self.uid is not None else _tasks_of_uid(self.outer_uid)
        resource.setrlimit(resource.RLIMIT_NPROC, (lim.processes + extra, lim.processes + extra))

    def _new_namespaces(self) -> bool:
        if _libc.unshare(_CLONE_NEWNET | _CLONE_NEWNS) == 0:
            return True
        if _libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET | _CLONE_NEWNS) != 0:
            return False
        try:  # map our uid/gid onto themselves so file ownership reads as before
            _write_file("/proc/self/setgroups", "deny")
            _write_file("/proc/self/uid_map", f"{self.outer_uid} {self.outer_uid} 1")
            _write_file("/proc/self/gid_map", f"{self.outer_gid} {self.outer_gid} 1")
        except OSError:
            pass  # still in an empty network namespace; mounts will fail and report so
        return True

    def _private_mounts(self) -> bool:
        if _libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
            return False
        size = f"size={self.limits.file_mb}m".encode()
        for d in _WRITABLE_DIRS:
            if os.path.isdir(d) and _libc.mount(b"tmpfs", d.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV,
                                                size + b",mode=1777") != 0:
                return False
        # The work dir becomes its own size-capped tmpfs holding a copy of the program, so a program
        # writing file after file fills at most file_mb of memory, not the disk. Our cwd still points at
        # the original directory (now hidden under the new /tmp), so its files are read from there.
        files = {}
        for name in os.listdir("."):
            with open(name, "rb") as f:
                files[name] = f.read()
        owner = b"" if self.uid is None else f",uid={self.uid},gid={self.uid}".encode()
        os.makedirs(self.workdir, exist_ok=True)
        if _libc.mount(b"tmpfs", self.workdir, b"tmpfs", _MS_NOSUID | _MS_NODEV, size + b",mode=0700" + owner) != 0:
            return False
        os.chdir(self.workdir)
        for name, data in files.items():
            with open(name, "wb") as f:
                f.write(data)
        return True

    def _expose_interpreter(self) -> bool:
        """Make the interpreter's prefix reachable behind a directory other users cannot traverse.

        ``hidden`` = (the topmost such ancestor, the prefix). A tmpfs (mode 0755) replaces the ancestor in
        this mount namespace, the prefix path is recreated in it and the real prefix bind-mounted there,
        so the interpreter keeps its path and everything else under the ancestor (e.g. /root) is hidden.
        """
        ancestor, prefix = self.hidden
        try:
            fd = os.open(prefix, os.O_PATH | os.O_DIRECTORY)
        except OSError:
            return False
        try:
            if _libc.mount(b"tmpfs", ancestor, b"tmpfs", _MS_NOSUID | _MS_NODEV, b"size=1m,mode=0755") != 0:
                return False
            os.makedirs(prefix, mode=0o755, exist_ok=True)
            return _libc.mount(f"/proc/self/fd/{fd}".encode(), prefix, None, _MS_BIND | _MS_REC, None) == 0
        except OSError:
            return False
        finally:
            os.close(fd)

    def _load_seccomp(self) -> bool:
        if self.seccomp_filter is None:
            return False
        try:
            _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            self.seccomp_filter.load()
            return True
        except Exception:  # noqa: BLE001 - reported as an absent layer
            return False


def hidden_interpreter(python: str) -> tuple[bytes, bytes] | None:
    """(topmost ancestor others cannot traverse, prefix) for the interpreter, or None if all are reachable.

    pyenv and root-owned venvs often live under /root (mode 0700), where a fresh uid cannot reach them.
    The prefix is ``<prefix>/bin/python`` two levels up from the resolved interpreter.
    """
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(python)))
    parts = prefix.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        path = "/" + "/".join(parts[:i])
        try:
            if not os.stat(path).st_mode & 0o001:
                return path.encode(), prefix.encode()
        except OSError:
            return None  # a missing interpreter: Popen reports it as a sandbox_error
    return None


def _write_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _tasks_of_uid(uid: int) -> int:
    """Tasks (processes and threads) owned by ``uid``: what RLIMIT_NPROC compares against."""
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry}/task"))
            except OSError:
                continue  # exited meanwhile
    return count


def kill_uid(uid: int, rounds: int = 3) -> None:
    """SIGKILL every process running as ``uid`` (the run's private uid), including setsid() escapees.

    A forked helper switches to ``uid`` and calls ``kill(-1, SIGKILL)``, which reaches exactly the
    processes that uid may signal: those of the same uid (never the helper itself). A process that is
    forking while the signal arrives has its child aborted by the kernel (fatal signal pending), so one
    round suffices; the extra rounds are cheap insurance. ESRCH means nothing was left.
    """
    pid = os.fork()
    if pid == 0:  # child: syscalls only, then _exit (never return into the parent's code)
        code = 0
        try:
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            for _ in range(rounds):
                os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except BaseException:  # noqa: BLE001
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"sandbox: could not sweep the processes of uid {uid} (status {status})")
