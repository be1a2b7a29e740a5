"""`pytest_test`: a py_test that runs one pytest file through tools/build/pytest_main.py."""

def pytest_test(name, src, deps = [], data = [], size = "medium", **kwargs):
    native.py_test(
        name = name,
        srcs = [src, "//tools/build:pytest_main.py"],
        main = "//tools/build:pytest_main.py",
        args = ["$(location %s)" % src],
        data = data + [src, "conftest.py"],
        deps = deps,
        size = size,
        python_version = "PY3",
        **kwargs
    )
