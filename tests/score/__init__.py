"""Tests of codeift.score (a package: its modules import as tests.score.test_x)."""
