"""Advisors: one module per kind of advice (``statistics``, ...), each proposing candidates for the
analysed workload and proving them with the planner."""
