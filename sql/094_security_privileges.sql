-- pg_architect: privileges of the security functions (issue 7). Idempotent; sorts after 090-093.
--
-- Views run these functions with the privileges of the role reading them: every role that
-- reads an arch view (arch_reader and the roles granted it) needs them.

GRANT EXECUTE ON FUNCTION arch.statement_visible(oid), arch.visible_text(oid, text),
      arch.approval_hash(text, text, text, text, text) TO arch_reader;
