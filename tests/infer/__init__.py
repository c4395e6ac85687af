"""Tests of codeift.infer (a package: its modules import as tests.infer.test_x)."""
