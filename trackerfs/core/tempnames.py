"""Names of editors', office suites', browsers' and rsync's temporary and lock files.

Such files live only on the local disk: they are listed (so the applications that made
them work), never uploaded, and gone at unmount. Renaming one onto a real name is how
an application commits a save, and that rename uploads it.
"""

from __future__ import annotations

import fnmatch
import re

PATTERNS = (
    ".~lock.*#",  # LibreOffice lock
    "lu*.tmp",  # LibreOffice save temp
    "~$*",  # MS Office owner file
    "~WRL*.tmp",  # MS Word temp
    "*.tmp",
    "*.temp",
    ".*.swp",  # vim swap files
    ".*.swo",
    ".*.swx",
    "*.swp",
    "4913",  # vim's probe of whether it may create files
    "*~",  # backup files (vim, emacs, gedit)
    ".#*",  # emacs lock
    "#*#",  # emacs auto-save
    "*.part",  # Firefox downloads
    "*.crdownload",  # Chromium downloads
    ".goutputstream-*",  # GNOME/GIO safe-save
    ".fuse_hidden*",
)
_GLOBS = re.compile("|".join(fnmatch.translate(pattern) for pattern in PATTERNS))
#: rsync writes `.NAME.XXXXXX` (six random letters and digits). A real file can look the
#: same (`.env.sample`), so such names are also "ambiguous": kept, never thrown away.
_RSYNC = re.compile(r"^\..+\.[A-Za-z0-9]{6}$")


def is_temporary(name: str) -> bool:
    """Whether `name` is an application's temporary or lock file."""
    return bool(_GLOBS.match(name) or _RSYNC.match(name))


def is_ambiguous(name: str) -> bool:
    """Whether a temporary-looking `name` could also be a real file's name."""
    return not _GLOBS.match(name) and bool(_RSYNC.match(name))
