"""The study suites of `python -m benchmarks.study --suite NAME`: one module per suite, each
with `get_suite()` returning a `benchmarks.study_suite.Suite` (modules starting with '_' hold
pieces shared by several suites)."""
