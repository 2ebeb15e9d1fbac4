"""What the tests are built with, not tests themselves: a site server that misbehaves on purpose (hostile), a
probe that drives one fetcher directly (fetcher_probe), and two measurements run by hand, `python -m
tests.support.parser_parity` and `python -m tests.support.link_cost` (docs/performance.md)."""
