"""What went wrong in a failed pip run, read from its log: the kind of failure and the package
it concerns, so that the message can name it and say what to try."""

from __future__ import annotations

import re
from dataclasses import dataclass

NO_MATCH = "no-match"
BUILD = "build"
OS_ERROR = "os-error"
DISK_FULL = "disk-full"
NETWORK = "network"
HASH = "hash"
CONFLICT = "conflict"
UNKNOWN = "unknown"

_NO_MATCH = re.compile(r"No matching distribution found for (\S+)")
_NO_VERSION = re.compile(r"Could not find a version that satisfies the requirement (\S+)")
_BUILD = re.compile(r"Failed (?:building wheel|to build(?: installable wheels for)?)"
                    r"(?: for)? ([A-Za-z0-9][A-Za-z0-9._-]*)")
_HASH_PACKAGE = re.compile(r"^\s+([A-Za-z0-9][A-Za-z0-9._-]*(?:==\S+)?) from \S+", re.M)
_COLLECTING = re.compile(r"Collecting ([A-Za-z0-9][^\s(]*)")
_INSTALLING = re.compile(r"Installing collected packages: (.+)")
_CONFLICT = re.compile(r"Cannot install (.+?) because these package versions have conflicting")
_NETWORK_SIGNS = ("ReadTimeoutError", "ConnectTimeoutError", "Max retries exceeded",
                  "NewConnectionError", "Connection reset", "ConnectionResetError",
                  "Temporary failure in name resolution", "Name or service not known",
                  "SSLError", "ProxyError", "IncompleteRead", "timed out",
                  "RemoteDisconnected", "getaddrinfo failed")


@dataclass(frozen=True)
class PipFailure:
    kind: str
    package: str | None  # as pip wrote it: "torch==2.14.1+cu126", "opencv-python-headless"


def _last_collected(log: str) -> str | None:
    """The package pip was busy with: the last one it fetched, or those it was installing."""
    installing = _INSTALLING.findall(log)
    if installing:
        return str(installing[-1]).strip()
    found = _COLLECTING.findall(log)
    return str(found[-1]) if found else None


def diagnose(log: str) -> PipFailure:
    """The most specific cause first: a missing distribution or a failed build names its
    package; network trouble is named by the download it interrupted."""
    for pattern in (_NO_MATCH, _NO_VERSION):
        found = pattern.search(log)
        if found:
            return PipFailure(NO_MATCH, found.group(1))
    if "THESE PACKAGES DO NOT MATCH THE HASHES" in log:
        hashed = _HASH_PACKAGE.search(log.split("DO NOT MATCH THE HASHES", 1)[1])
        return PipFailure(HASH, hashed.group(1) if hashed else _last_collected(log))
    found = _BUILD.search(log)
    if found:
        return PipFailure(BUILD, found.group(1))
    if "No space left on device" in log:
        return PipFailure(DISK_FULL, _last_collected(log))
    if any(sign in log for sign in _NETWORK_SIGNS):
        return PipFailure(NETWORK, _last_collected(log))
    if "Could not install packages due to an OSError" in log:
        return PipFailure(OS_ERROR, _last_collected(log))
    found = _CONFLICT.search(log)
    if found or "ResolutionImpossible" in log:
        return PipFailure(CONFLICT, found.group(1) if found else None)
    return PipFailure(UNKNOWN, _last_collected(log))
