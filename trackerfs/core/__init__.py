"""The filesystem's logic, free of FUSE and HTTP: names, inodes, caches, reads, writes."""
