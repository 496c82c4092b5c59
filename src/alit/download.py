"""Downloading one file: resumed, written atomically, checked, from a mirror when one is set.

  ALIT_DOWNLOAD_MIRROR=URL   every download comes from URL/<the file's name> instead of its
                             published address (air-gapped clusters keep such a mirror)
  ALIT_OFFLINE=1             no download at all (`alit eval --offline` sets it)

A file is written to `<dest>.part` and renamed to `<dest>` only once it is complete (its length
equals the server's Content-Length, and its sha256 starts with the expected hex when one is
given), so an interrupted or truncated download is never taken for the file. A `.part` left by an
earlier attempt is resumed with an HTTP Range request; a server that ignores Range sends the whole
file again. Standard library only (urllib); the progress bar goes to stderr.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .errors import AlitError

MIRROR_ENV = "ALIT_DOWNLOAD_MIRROR"
OFFLINE_ENV = "ALIT_OFFLINE"
CHUNK = 1 << 20
# Dropbox sends the file itself (not an HTML page) to this user agent; the paper's download.py uses it
USER_AGENT = "Wget/1.16 (linux-gnu)"


class DownloadError(AlitError):
    """A download that did not give the file: `url` is the address tried, `reason` why not."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"download from {url} failed: {reason}")
        self.url, self.reason = url, reason


def offline() -> bool:
    """True when downloads are forbidden (ALIT_OFFLINE set to anything but '', 0, false, no)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def source_url(file_name: str, url: str) -> str:
    """Where a file is fetched from: the mirror's URL/<file_name> when ALIT_DOWNLOAD_MIRROR is set."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return url
    return mirror.rstrip("/") + "/" + urllib.parse.quote(file_name)


def fetch(url: str, dest: str | Path, *, sha256_prefix: str | None = None, progress: bool = True,
          attempts: int = 3, timeout: float = 60.0) -> Path:
    """Download url to dest (a file path) and return dest; DownloadError if it cannot.

    sha256_prefix: the start of the file's sha256 in hex (torch hub's convention: the hex in a
    file name); a file that does not match is deleted and refused. attempts: connections tried
    in all (a truncated transfer or a dropped connection is resumed from where it stopped).
    """
    dest = Path(dest)
    if offline():
        raise DownloadError(url, f"offline ({OFFLINE_ENV}=1 or --offline): downloads are switched off")
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(url, f"cannot create {dest.parent} ({e.strerror or e})") from None
    reason = "no attempt made"
    for _ in range(max(1, attempts)):
        try:
            _transfer(url, part, progress, timeout)
            break
        except _Retry as e:
            reason = str(e)
    else:
        raise DownloadError(url, f"{reason} (after {attempts} attempts; the partial file {part} is kept "
                                 f"and a later try resumes it)")
    if sha256_prefix:
        digest = sha256(part)
        if not digest.startswith(sha256_prefix.lower()):
            part.unlink()
            raise DownloadError(url, f"wrong content: the file's sha256 is {digest[:16]}..., its name says it "
                                     f"starts with {sha256_prefix}; refused and deleted")
    os.replace(part, dest)
    return dest


class _Retry(Exception):
    """A transfer that stopped early: worth another attempt (resuming)."""


def _transfer(url: str, part: Path, progress: bool, timeout: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the .part is not a prefix the server knows: start again
            part.unlink()
            raise _Retry(f"the server refused to resume ({e.code} {e.reason})") from None
        if e.code >= 500:
            raise _Retry(f"HTTP {e.code} {e.reason}") from None
        raise DownloadError(url, f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, (ConnectionRefusedError, socket.gaierror)):
            raise DownloadError(url, _reason_text(reason)) from None
        raise _Retry(_reason_text(reason)) from None
    except (OSError, http.client.HTTPException) as e:
        raise _Retry(_reason_text(e)) from None
    with response:
        status = response.status
        if response.headers.get_content_type() == "text/html":
            raise DownloadError(url, "the server sent an HTML page, not the file (a login or confirmation "
                                     "page?); download it in a browser and use the manual route")
        if status == 206:
            total = _range_total(response.headers.get("Content-Range"))
            mode, start = "ab", have
        else:  # 200: the whole file (the server ignored Range, or there was nothing to resume)
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode, start = "wb", 0
        written = start
        try:
            with open(part, mode) as f, tqdm(total=total, initial=start, unit="B", unit_scale=True,
                                             unit_divisor=1024, desc=part.name[:-len(".part")],
                                             file=sys.stderr, disable=None if progress else True,
                                             leave=False) as bar:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
        except http.client.IncompleteRead:
            pass  # counted below as a truncated transfer
        except (OSError, http.client.HTTPException) as e:
            if isinstance(e, OSError) and e.errno is not None and not isinstance(e, (ConnectionError,
                                                                                      TimeoutError)):
                raise DownloadError(url, f"cannot write {part} ({e.strerror or e})") from None
            raise _Retry(f"the connection broke after {written} bytes ({_reason_text(e)})") from None
    if total is not None and written != total:
        raise _Retry(f"truncated: {written} of {total} bytes arrived")


def _range_total(content_range: str | None) -> int | None:
    """The total length in 'bytes a-b/total' (None when the server does not say)."""
    if content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        if total.isdigit():
            return int(total)
    return None


def _reason_text(reason) -> str:
    if isinstance(reason, socket.timeout) or isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host ({reason.strerror or reason})"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return " ".join(str(reason).split())[:200] or type(reason).__name__


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()
