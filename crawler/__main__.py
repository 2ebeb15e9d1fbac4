"""Entry point of `crawler` and `python -m crawler`.

gevent's monkey patching must happen before the HTTP libraries (and ssl) are imported, so the choice of
backend is read here, from the raw arguments, before the CLI and everything behind it is loaded.
"""

from __future__ import annotations

import sys

# The commands that fetch in this process; `bench` runs each backend in a subprocess of its own.
FETCHING_COMMANDS = frozenset({"crawl", "demo"})


def wants_gevent(args: list[str]) -> bool:
    """Whether the command line runs a fetching command on the gevent backend (`--backend gevent`,
    `--backend=gevent`, `-b gevent`)."""
    if not args or args[0] not in FETCHING_COMMANDS:
        return False
    for index, arg in enumerate(args):
        if arg in ("--backend", "-b") and args[index + 1 : index + 2] == ["gevent"]:
            return True
        if arg in ("--backend=gevent", "-bgevent"):
            return True
    return False


def main() -> None:
    """Run the crawler command line."""
    if wants_gevent(sys.argv[1:]):
        from gevent import monkey

        monkey.patch_all()
    from crawler.cli import app

    app(prog_name="crawler")


if __name__ == "__main__":
    main()
