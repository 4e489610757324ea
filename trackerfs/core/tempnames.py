"""Names of editors', office suites', browsers' and rsync's temporary and lock files.

Such files live only on the local disk: they are listed (so the applications that made
them work) and never uploaded. Renaming one onto a real name is how an application
commits a save, and that rename uploads it. One still there at unmount (or after a
crash) holding bytes goes to the recovery folder, since a user may have chosen the
name (`results.tmp`) or the application may still need it (vim's swap file of a file
still open is its recovery data); only an application's lock file, which records who
has a document open and nothing else, is dropped.
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
    "*-journal",  # SQLite rollback journal
    "*-wal",  # SQLite write-ahead log
    "*-shm",  # SQLite shared memory index
)
#: Lock files: who has a document open (user, host, time), no content of the document.
LOCK_PATTERNS = (
    ".~lock.*#",  # LibreOffice
    "~$*",  # MS Office owner file
)
_GLOBS = re.compile("|".join(fnmatch.translate(pattern) for pattern in PATTERNS))
_LOCKS = re.compile("|".join(fnmatch.translate(pattern) for pattern in LOCK_PATTERNS))
#: rsync writes `.NAME.XXXXXX` (six random letters and digits). A real file can look the
#: same (`.env.sample`): like every temporary name with bytes, it is kept at unmount.
_RSYNC = re.compile(r"^\..+\.[A-Za-z0-9]{6}$")


def is_temporary(name: str) -> bool:
    """Whether `name` is an application's temporary or lock file."""
    return bool(_GLOBS.match(name) or _RSYNC.match(name))


def is_lock_file(name: str) -> bool:
    """Whether `name` is an office suite's lock file (its bytes are not a user's)."""
    return bool(_LOCKS.match(name))
