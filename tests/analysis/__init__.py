"""Tests of codeift.analysis (a package: its modules import as tests.analysis.test_x)."""
