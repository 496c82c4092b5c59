"""Output file names that never collide: the CLI's one rule for repeated names."""
from __future__ import annotations


def unique_names(stems: list[str], suffix: str = "") -> list[str]:
    """stem + suffix for each stem, in order, with -2, -3, ... added to a stem whose name is taken."""
    names, used = [], set()
    for stem in stems:
        name, n = f"{stem}{suffix}", 1
        while name in used:
            n += 1
            name = f"{stem}-{n}{suffix}"
        used.add(name)
        names.append(name)
    return names
