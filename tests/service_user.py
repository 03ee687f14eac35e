"""A deployment's service user for the tests that run the operator's commands as root: a
directory the service user (``nobody``, uid 65534) owns, and Python run as that user."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import site
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVICE_UID = SERVICE_GID = 65534  # nobody / nogroup
#: What the service user's processes make their files with: a journal readable by its
#: group only, so that a file made otherwise (0644) shows.
SERVICE_UMASK = 0o027

needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root: the operator's commands run as root (sudo) on a journal that a "
           "service user (uid 65534) owns; CI runs as root")


@pytest.fixture
def service_dir() -> Iterator[Path]:
    """An empty log directory owned by the service user, in a directory it can reach (the
    test's own tmp_path is root's, mode 0700)."""
    base = Path(tempfile.mkdtemp(prefix="fsm-exec-service-"))
    try:
        base.chmod(0o755)
        log_dir = base / "events"
        log_dir.mkdir(mode=0o750)
        os.chown(log_dir, SERVICE_UID, SERVICE_GID)
        yield log_dir
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _candidates() -> list[str]:
    """Interpreters of this Python version, the running one first (one under root's home,
    mode 0700, cannot be run by another user; the system's may)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    found = [sys.executable, getattr(sys, "_base_executable", sys.executable),
             *(str(Path(d) / version) for d in ("/usr/bin", "/usr/local/bin", "/bin"))]
    return list(dict.fromkeys(found))


def _environment() -> dict[str, str]:
    """The service user's environment: this checkout's package, its dependencies (this
    environment's site-packages, by path) and the tests' helpers importable; no coverage
    of ours (it would write root's data file)."""
    import fsm_exec

    tests = str(Path(__file__).parent)
    package_root = str(Path(fsm_exec.__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_", "COVERAGE"))}
    paths = [tests, package_root, *site.getsitepackages()]
    env.update(PYTHONPATH=os.pathsep.join(paths), HOME=tempfile.gettempdir(),
               PYTHONDONTWRITEBYTECODE="1")
    return env


def _run(python: str, code: str, args: tuple[str | Path, ...]
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-c", textwrap.dedent(code), *map(str, args)],
        user=SERVICE_UID, group=SERVICE_GID, extra_groups=[], umask=SERVICE_UMASK,
        env=_environment(), cwd=tempfile.gettempdir(), capture_output=True, text=True,
        timeout=120, check=False)


@functools.cache
def service_python() -> str | None:
    """An interpreter the service user can run that imports this checkout, else None."""
    for python in _candidates():
        if not Path(python).exists():
            continue
        try:
            probe = _run(python, "import fsm_exec, journals", ())
        except OSError:  # not executable by the service user
            continue
        if probe.returncode == 0:
            return python
    return None


def as_service(code: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (Python; ``sys.argv[1:]`` are ``args``) as the service user, with this
    checkout and the tests' helpers importable; its output is returned. Skips the test,
    saying why, when no interpreter of this version can be run by that user."""
    python = service_python()
    if python is None:
        pytest.skip(f"no python{sys.version_info.major}.{sys.version_info.minor} the "
                    f"service user (uid {SERVICE_UID}) can run (tried "
                    f"{', '.join(_candidates())}): this one is under a directory it cannot "
                    "enter")
    return _run(python, code, args)


def owners(log_dir: Path) -> dict[str, tuple[int, int, str]]:
    """Every file of ``log_dir``: its owner, group and permission bits (octal)."""
    return {p.name: (p.stat().st_uid, p.stat().st_gid, oct(p.stat().st_mode & 0o777))
            for p in sorted(log_dir.iterdir())}


@contextlib.contextmanager
def service_process(code: str, *args: str | Path) -> Iterator[subprocess.Popen[str]]:
    """``code`` running as the service user until the block ends: it prints ``ready`` when
    it is, and ends when its standard input closes."""
    python = service_python()
    if python is None:
        as_service("")  # skips, saying why
    assert python is not None
    proc = subprocess.Popen(
        [python, "-c", textwrap.dedent(code), *map(str, args)],
        user=SERVICE_UID, group=SERVICE_GID, extra_groups=[], umask=SERVICE_UMASK,
        env=_environment(), cwd=tempfile.gettempdir(), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == "ready", (line, proc.stderr.read() if proc.stderr else "")
        yield proc
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=60)
