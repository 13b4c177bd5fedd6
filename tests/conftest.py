"""Shared pytest set-up: fixture modules live in tests/fixtures/ (on sys.path via pyproject)."""

pytest_plugins = [
    "fixtures.prereq",
    "fixtures.cluster",
    "fixtures.runtime_server",
    "fixtures.node",
    "fixtures.hub_standin",
    "fixtures.s3_server",
]
