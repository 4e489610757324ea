"""trackerfs: mount issue-tracker attachments as a filesystem."""

__version__ = "0.1.0"
