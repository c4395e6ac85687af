"""Tests of codeift.data (a package: its modules import as tests.data.test_x)."""
