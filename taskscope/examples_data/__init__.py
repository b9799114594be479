"""Example programs shipped inside the package, so `taskscope demo` works from an installed
wheel as well as from a checkout. `examples/demo_service.py` at the repository root is the
same file, kept for reading (a test checks that the two do not drift apart)."""
