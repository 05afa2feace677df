"""The public API of the tolken package is small and deliberate."""

import tolken


def test_exported_members_are_exactly_all() -> None:
    """Everything in __all__ exists and nothing public is exported by accident."""
    exported = {name for name in dir(tolken) if not name.startswith("_")}
    submodules = {"cli", "config", "connectors", "errors"}
    assert set(tolken.__all__) - {"__version__"} == exported - submodules
    for name in tolken.__all__:
        assert hasattr(tolken, name)
