"""`py_program`: an absl entry point as a py_binary plus a py_library of the same file."""

def py_program(name, deps, data = [], test_visibility = []):
    """`bazel run :<name>` runs the program; tests import it through `:<name>_lib`."""
    native.py_binary(
        name = name,
        srcs = [name + ".py"],
        data = data,
        python_version = "PY3",
        deps = deps,
    )
    native.py_library(
        name = name + "_lib",
        srcs = [name + ".py"],
        visibility = test_visibility,
        deps = deps,
    )
