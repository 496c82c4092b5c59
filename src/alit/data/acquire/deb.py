"""Debian packages: downloaded as a .deb (no root, nothing installed) and the wanted files streamed
out of it, or, only when the user allowed it (`alit data photos --yes`), installed system-wide with
apt-get (root, network to the mirror)."""
from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Callable

from ...files import atomic_write


class Debian:
    """apt-get, run only when allowed; each method returns '' or why the package could not be had.
    install: `apt-get download` (into a folder of ours; the system is left as it is). system: also
    `apt-get install` (system-wide, as root)."""

    def __init__(self, install: bool, log: Callable[[str], None], system: bool = False):
        self.install, self.system, self.log, self._updated = install, system, log, False

    def why_not(self) -> str:
        if not self.install:
            return "--no-install given"
        if not self.system:
            return "installing it is system-wide: rerun with --yes (as root) to let alit do it"
        if shutil.which("apt-get") is None:
            return "no apt-get on this machine"
        if os.geteuid() != 0:
            return "not root"
        return ""

    def _apt(self, args: list[str], cwd: Path | None = None) -> str:
        """Run apt-get; on failure update the package lists (system-wide: only when allowed) once and
        retry. '' or the error."""
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for attempt in range(2):
            run = subprocess.run(["apt-get", *args], cwd=cwd, env=env, capture_output=True, text=True)
            if run.returncode == 0:
                return ""
            if attempt or self._updated or not self.system:
                break
            self.log("apt-get update (system-wide, as --yes allows)")
            self._updated = True
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
        lines = [l for l in (run.stderr + run.stdout).splitlines() if l.startswith("E:")]
        error = (lines[-1] if lines else f"apt-get {args[0]} exited with {run.returncode}").strip()
        return error if self.system else f"{error} (with --yes, as root, alit updates the package lists and retries)"

    def ensure(self, package: str, present: Callable[[], bool]) -> str:
        """Install `package` unless present(); '' when it is there now, else why not."""
        if present():
            return ""
        why = self.why_not()
        if why:
            return f"{package} is not installed ({why}), or: sudo apt-get install -y --no-install-recommends {package}"
        self.log(f"apt-get install -y --no-install-recommends {package} (system-wide, as --yes allows)")
        error = self._apt(["install", "-y", "--no-install-recommends", package])
        if error or not present():
            return f"apt-get install {package} failed: {error or 'its files did not appear'}"
        return ""

    def download(self, package: str, into: Path) -> tuple[Path | None, str]:
        """`apt-get download` a .deb into `into` (no root needed, only the mirror)."""
        if not self.install:
            return None, f"--no-install given (without it: apt-get download {package})"
        if shutil.which("apt-get") is None:
            return None, "no apt-get on this machine"
        self.log(f"apt-get download {package}")
        into.mkdir(parents=True, exist_ok=True)
        error = self._apt(["download", package], cwd=into)
        debs = sorted(into.glob(f"{package}_*.deb"))
        if error or not debs:
            return None, f"apt-get download {package} failed: {error or 'no .deb appeared'}"
        return debs[-1], ""


def extract_deb(deb: Path, members: dict[str, str], into: Path) -> str:
    """Copy each member (path inside the .deb -> file name) out of a .deb into `into`; '' or what
    went wrong."""
    if shutil.which("dpkg-deb") is None:
        return f"no dpkg-deb on this machine to open {deb.name}"
    wanted = {f"./{m}": n for m, n in members.items()}
    into.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:  # streamed: nothing else on disk
            for member in tar:
                name = wanted.pop(member.name, None)
                if name and member.isfile():
                    blob = tar.extractfile(member).read()
                    atomic_write(into / name, lambda tmp: tmp.write_bytes(blob))
    finally:
        proc.stdout.close()
        proc.wait()
    return f"{deb.name} lacks {', '.join(sorted(wanted.values()))}" if wanted else ""
