"""The `crawler` command line (typer): each command a thin function that reads its options, calls the engine,
the views, the bench or the site, and prints. Usage errors are one line and exit 2.

May import: every other part of the crawler. Nothing imports it but `crawler.__main__`.
"""
