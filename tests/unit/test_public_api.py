"""The public API of the tolken package is small and deliberate."""

import inspect

import tolken


def test_exported_members_are_exactly_all() -> None:
    """Everything in __all__ exists and nothing public is exported by accident."""
    public = {name for name in dir(tolken) if not name.startswith("_")}
    # Subpackages appear as attributes once anything imports them; they are not exports.
    exported = {name for name in public if not inspect.ismodule(getattr(tolken, name))}
    assert set(tolken.__all__) - {"__version__"} == exported
    for name in tolken.__all__:
        assert hasattr(tolken, name)
