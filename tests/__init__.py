"""acl_dist test suite (a package so that `tests.conftest` helpers import by name)."""
