"""Advisors: one module per kind of advice (rewrite rules so far; the advisor interface comes later)."""
