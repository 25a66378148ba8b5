"""A short run of benchmarks/fuzz_reliability.py (the full run is documented in docs/reliability.md)."""

from benchmarks.fuzz_reliability import run, table


def test_fuzz_harness_finds_no_crash_slow_refusal_or_stray_file():
    results = run(scale=0.05)
    assert all(r.cases for r in results)
    failures = [(r.target, f) for r in results for f in r.failures]
    assert not failures, failures
    assert table(results).count("\n") == len(results) + 1
