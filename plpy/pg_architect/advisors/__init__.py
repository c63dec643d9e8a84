"""Advisors: one module per kind of advice (``statistics``, ``rewrite_rules``, ...), each proposing
candidates for the analysed workload and proving them with the planner."""
