"""The `crawler` command line (typer): each command a thin function that reads its options, calls the engine,
the views, the bench or the site, and prints. Usage errors are one line and exit 2.

Importing the package registers every command on `app`, in the order `crawler --help` lists them. May import:
every other part of the crawler. Nothing imports it but `crawler.__main__`.
"""

from crawler.commands import bench, cluster, crawl, export, pull, read, serve, status
from crawler.commands.app import app

__all__ = ["app", "bench", "cluster", "crawl", "export", "pull", "read", "serve", "status"]
