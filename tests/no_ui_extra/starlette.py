# On PYTHONPATH in a test: `import starlette` fails as if the `ui` extra were not installed.
raise ImportError("No module named 'starlette' (simulated by the tests)")
