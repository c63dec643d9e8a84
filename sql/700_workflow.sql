-- pg_architect: the approval workflow and the sidecar's work queue. Idempotent.
--
-- Lifecycle of a recommendation (enforced by a trigger, whoever updates the row):
--   proposed → approved → pr_open → merged | closed        (policy on_approval: a DBA approves)
--   proposed → pr_open                                      (policy auto_above_threshold: the sidecar)
--   proposed | approved → rejected                          (an approver, with a reason)
--   proposed → superseded                                   (a later audit found something better)
--   closed → pr_open                                        (the pull request was reopened)
--   proposed | approved | pr_open | merged | closed → applied   (the index exists in the database)
--   rejected → proposed | applied                           (an audit: cost grew past reproposal_cost_factor,
--                                                            or the index was created anyway; issue 3)
-- Every change is recorded in arch.recommendation_transition with current_user and the time.
-- Nothing here applies anything to the database: an approval only queues a pull request.

CREATE OR REPLACE FUNCTION arch._transition_role(from_status text, to_status text) RETURNS name
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT t.role::name FROM (VALUES
    ('proposed', 'approved',   'arch_approver'),
    ('proposed', 'rejected',   'arch_approver'),
    ('approved', 'rejected',   'arch_approver'),
    ('proposed', 'superseded', 'arch_admin'),
    ('approved', 'pr_open',    'arch_sidecar'),
    ('proposed', 'pr_open',    'arch_sidecar'),
    ('pr_open',  'merged',     'arch_sidecar'),
    ('pr_open',  'closed',     'arch_sidecar'),
    ('closed',   'pr_open',    'arch_sidecar'),
    ('proposed', 'applied',    'arch_admin'),
    ('approved', 'applied',    'arch_admin'),
    ('pr_open',  'applied',    'arch_admin'),
    ('merged',   'applied',    'arch_admin'),
    ('closed',   'applied',    'arch_admin'),
    -- issue 3 (knowledge base): an audit re-proposes a rejected recommendation once the
    -- statement's cost grew by reproposal_cost_factor, and marks it applied when a human
    -- created the index anyway.
    ('rejected', 'proposed',   'arch_admin'),
    ('rejected', 'applied',    'arch_admin')
) AS t (from_status, to_status, role)
WHERE t.from_status = _transition_role.from_status AND t.to_status = _transition_role.to_status
$$;
COMMENT ON FUNCTION arch._transition_role(text, text) IS
'Internal: the role whose members may move a recommendation from one status to another (NULL: not a valid transition).';

CREATE OR REPLACE FUNCTION arch._recommendation_check() RETURNS trigger
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    needed name;
    next_states text;
BEGIN
    IF NEW.status IS NOT DISTINCT FROM OLD.status THEN
        IF (NEW.decided_at, NEW.decided_by, NEW.decision_note)
           IS DISTINCT FROM (OLD.decided_at, OLD.decided_by, OLD.decision_note) THEN
            RAISE EXCEPTION 'recommendation %: decided_at, decided_by and decision_note record a decision', OLD.id
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'They are set by arch.approve() and arch.reject(), never by hand.';
        END IF;
        RETURN NEW;
    END IF;
    needed := arch._transition_role(OLD.status, NEW.status);
    IF needed IS NULL THEN
        SELECT string_agg(s, ', ') INTO next_states
        FROM unnest(ARRAY['proposed', 'approved', 'rejected', 'pr_open', 'merged', 'closed', 'applied', 'superseded']) s
        WHERE arch._transition_role(OLD.status, s) IS NOT NULL;
        RAISE EXCEPTION 'recommendation % is %: it cannot become %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = CASE WHEN next_states IS NULL THEN format('%s is a final status.', OLD.status)
                                ELSE format('From %s it can only become: %s.', OLD.status, next_states) END,
                  HINT = 'The lifecycle is proposed → approved → pr_open → merged | closed; proposed → rejected; '
                         'proposed → superseded; → applied. Use arch.approve() and arch.reject().';
    END IF;
    IF NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user)
       AND NOT pg_has_role(current_user, needed, 'MEMBER') THEN
        RAISE EXCEPTION 'recommendation %: only members of % may change it from % to %', OLD.id, needed, OLD.status, NEW.status
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('GRANT %s TO %s; (a superuser or the role''s admin can).', needed, current_user);
    END IF;
    IF OLD.status = 'proposed' AND NEW.status = 'pr_open'
       AND (SELECT s.approval_policy FROM arch.settings s WHERE s.id) <> 'auto_above_threshold' THEN
        RAISE EXCEPTION 'recommendation %: a pull request without approval needs the auto_above_threshold policy', OLD.id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Approve it first: SELECT arch.approve(id, note).';
    END IF;
    -- What a human approves (or, under auto_above_threshold, what the pull request is opened
    -- from) is recorded as a hash the sidecar checks before writing anything (issue 7).
    IF OLD.status = 'proposed' AND NEW.status IN ('approved', 'pr_open') THEN
        NEW.approved_hash := arch.approval_hash(NEW.kind, NEW.schema_name, NEW.table_name, NEW.ddl, NEW.rollback_ddl,
                                                 NEW.details);
    ELSIF NEW.status = 'proposed' THEN
        NEW.approved_hash := NULL;
    END IF;
    IF NEW.status IN ('approved', 'rejected') THEN
        NEW.decided_at := now();
        NEW.decided_by := current_user;
        IF NEW.status = 'rejected' THEN
            -- The reason: arch.reject() passes it as decision_note; an UPDATE may set rejected_reason.
            IF NEW.rejected_reason IS DISTINCT FROM OLD.rejected_reason AND NEW.rejected_reason IS NOT NULL THEN
                NEW.decision_note := NEW.rejected_reason;
            ELSIF NEW.decision_note IS NOT DISTINCT FROM OLD.decision_note THEN
                NEW.decision_note := NULL;
            END IF;
            NEW.rejected_reason := NEW.decision_note;
            NEW.rejected_at := now();
        END IF;
    ELSIF NEW.status = 'proposed' THEN  -- proposed again (issue 3): the old decision no longer holds
        NEW.decided_at := NULL;
        NEW.decided_by := NULL;
        NEW.decision_note := NULL;
    ELSE
        NEW.decided_at := OLD.decided_at;
        NEW.decided_by := OLD.decided_by;
        NEW.decision_note := OLD.decision_note;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION arch._recommendation_check() IS
'Internal trigger: refuses invalid status changes of a recommendation (with DETAIL and HINT) and stamps who decided and when.';

CREATE OR REPLACE FUNCTION arch._recommendation_log() RETURNS trigger
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    why text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        why := format('found by audit %s', NEW.first_audit_run_id);
    ELSIF NEW.status IN ('approved', 'rejected') THEN
        why := NEW.decision_note;
    ELSIF NEW.status = 'superseded' THEN
        why := format('superseded by recommendation %s', NEW.superseded_by);
    ELSIF NEW.status IN ('pr_open', 'merged', 'closed') THEN
        SELECT format('pull request #%s %s', p.pr_number, p.url) INTO why
        FROM arch.pull_request p WHERE p.recommendation_id = NEW.id;
    ELSIF NEW.status = 'proposed' THEN
        why := 'proposed again by an audit';
    ELSIF NEW.status = 'applied' THEN
        why := format('index %s found in the catalog', coalesce(NEW.applied_index::text, NEW.index_name::text));
    END IF;
    INSERT INTO arch.recommendation_transition (recommendation_id, from_status, to_status, note)
    VALUES (NEW.id, CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END, NEW.status, why);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION arch._recommendation_log() IS
'Internal trigger: records every new recommendation and every status change in arch.recommendation_transition.';

CREATE OR REPLACE FUNCTION arch._recommendation_freeze() RETURNS trigger
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF OLD.status <> 'proposed'
       AND (NEW.fingerprint, NEW.kind, NEW.index_kind, NEW.schema_name, NEW.table_name, NEW.index_name,
            NEW.definition, NEW.ddl, NEW.hypo_ddl, NEW.rollback_ddl, NEW.columns, NEW.queryid, NEW.query, NEW.userid,
            NEW.details)
           IS DISTINCT FROM
           (OLD.fingerprint, OLD.kind, OLD.index_kind, OLD.schema_name, OLD.table_name, OLD.index_name,
            OLD.definition, OLD.ddl, OLD.hypo_ddl, OLD.rollback_ddl, OLD.columns, OLD.queryid, OLD.query, OLD.userid,
            OLD.details) THEN
        RAISE EXCEPTION 'recommendation % is %: its DDL, details, table, kind and statement are frozen', OLD.id, OLD.status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'What a human approved is exactly what reaches the pull request; a recommendation can only be changed while it is proposed.',
                  HINT = 'Reject it (SELECT arch.reject(id, reason)) and let the next audit propose the new DDL, or write the migration by hand.';
    END IF;
    IF NEW.approved_hash IS DISTINCT FROM OLD.approved_hash AND NEW.status IS NOT DISTINCT FROM OLD.status THEN
        RAISE EXCEPTION 'recommendation %: approved_hash records an approval', OLD.id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'It is set when the recommendation leaves proposed and never changes afterwards.',
                  HINT = 'Approve with SELECT arch.approve(id, note).';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION arch._recommendation_freeze() IS
'Internal trigger: once a recommendation has left proposed, its DDL, rollback, details (the structured advice of partition, materialized_view and cache), table, kind, statement and approval hash can no longer change (error with DETAIL and HINT).';

DROP TRIGGER IF EXISTS recommendation_freeze ON arch.recommendation;
CREATE TRIGGER recommendation_freeze
    BEFORE UPDATE ON arch.recommendation
    FOR EACH ROW EXECUTE FUNCTION arch._recommendation_freeze();
DROP TRIGGER IF EXISTS recommendation_check ON arch.recommendation;
CREATE TRIGGER recommendation_check
    BEFORE UPDATE OF status, decided_at, decided_by, decision_note ON arch.recommendation
    FOR EACH ROW EXECUTE FUNCTION arch._recommendation_check();
DROP TRIGGER IF EXISTS recommendation_log_insert ON arch.recommendation;
CREATE TRIGGER recommendation_log_insert
    AFTER INSERT ON arch.recommendation
    FOR EACH ROW EXECUTE FUNCTION arch._recommendation_log();
DROP TRIGGER IF EXISTS recommendation_log_update ON arch.recommendation;
CREATE TRIGGER recommendation_log_update
    AFTER UPDATE OF status ON arch.recommendation
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION arch._recommendation_log();

-- ---------------------------------------------------------------- the work queue

CREATE OR REPLACE FUNCTION arch._request_notify() RETURNS trigger
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.status = 'pending' THEN
        PERFORM pg_notify('arch_request', NEW.kind || ':' || NEW.id);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION arch._request_notify() IS
'Internal trigger: NOTIFY arch_request (payload kind:id) when a request becomes pending, so a LISTENing sidecar wakes up.';

DROP TRIGGER IF EXISTS request_notify ON arch.request;
CREATE TRIGGER request_notify
    AFTER INSERT OR UPDATE OF status ON arch.request
    FOR EACH ROW EXECUTE FUNCTION arch._request_notify();

-- ---------------------------------------------------------------- approve / reject

CREATE OR REPLACE FUNCTION arch._decision_error(fn text, rec_id bigint, status text, decided_by name,
                                                decided_at timestamptz, note text) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who text := CASE WHEN decided_by IS NULL THEN ''
                     ELSE format(' by %s at %s', decided_by, to_char(decided_at, 'YYYY-MM-DD HH24:MI:SS TZ'))
                          || CASE WHEN note IS NOT NULL AND note <> '' THEN format(' (%s)', note) ELSE '' END
                END;
BEGIN
    RAISE EXCEPTION '%: recommendation % is %, not proposed', fn, rec_id, status
        USING ERRCODE = 'object_not_in_prerequisite_state',
              DETAIL = CASE status
                  WHEN 'approved'   THEN 'It was approved' || who || '; its pull request is queued.'
                  WHEN 'rejected'   THEN 'It was rejected' || who || '.'
                  WHEN 'pr_open'    THEN 'Its pull request is open.'
                  WHEN 'merged'     THEN 'Its pull request was merged.'
                  WHEN 'closed'     THEN 'Its pull request was closed without merging.'
                  WHEN 'applied'    THEN 'The index already exists in the database.'
                  WHEN 'superseded' THEN 'A later audit found a better recommendation for the same statements.'
                  ELSE NULL END,
              HINT = CASE
                  WHEN status IN ('approved', 'pr_open') AND fn = 'arch.approve' THEN
                      'Nothing to do: see SELECT * FROM arch.pull_requests WHERE recommendation_id = ' || rec_id || ';'
                  WHEN status IN ('pr_open', 'merged', 'closed') THEN
                      'The decision is now the pull request''s review: merge or close it on GitHub.'
                  WHEN status = 'superseded' THEN
                      'See SELECT * FROM arch.recommendations WHERE id = (SELECT superseded_by FROM arch.recommendation WHERE id = ' || rec_id || ');'
                  ELSE 'Only proposed recommendations can be approved or rejected: SELECT * FROM arch.pending_recommendations;' END;
END
$$;
COMMENT ON FUNCTION arch._decision_error(text, bigint, text, name, timestamptz, text) IS
'Internal: raises the error of arch.approve() / arch.reject() for a recommendation that is not waiting for a decision.';

CREATE OR REPLACE FUNCTION arch._queue_request(kind text, payload jsonb DEFAULT '{}', dedup_key text DEFAULT NULL,
                                               requeue_failed boolean DEFAULT false) RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    req bigint;
BEGIN
    -- Runs as the caller (requested_by = current_user): DO NOTHING needs only INSERT on the queue
    -- (approvers); re-queueing a failed one (the audit) needs UPDATE too.
    IF requeue_failed THEN
        INSERT INTO arch.request AS q (kind, payload, dedup_key)
        VALUES (_queue_request.kind, coalesce(_queue_request.payload, '{}'), _queue_request.dedup_key)
        ON CONFLICT ON CONSTRAINT request_dedup_key_unique DO UPDATE
            SET status = 'pending', attempts = 0, run_after = now(), last_error = NULL, finished_at = NULL,
                claimed_by = NULL, claimed_at = NULL
            WHERE q.status IN ('failed', 'refused')
        RETURNING q.id INTO req;
    ELSE
        INSERT INTO arch.request AS q (kind, payload, dedup_key)
        VALUES (_queue_request.kind, coalesce(_queue_request.payload, '{}'), _queue_request.dedup_key)
        ON CONFLICT ON CONSTRAINT request_dedup_key_unique DO NOTHING
        RETURNING q.id INTO req;
    END IF;
    RETURN req;
END
$$;
COMMENT ON FUNCTION arch._queue_request(text, jsonb, text, boolean) IS
'Internal: queues a request for the sidecar (one place for approve, ask, train and the audit). Returns its id, or NULL when a request with the same dedup_key exists and was left as is (requeue_failed: a failed or refused one is queued again).';

CREATE OR REPLACE FUNCTION arch.approve(id bigint, note text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rec record;
    req bigint;
BEGIN
    IF approve.id IS NULL THEN
        RAISE EXCEPTION 'arch.approve: the recommendation id must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'SELECT id, table_name, ddl, confidence FROM arch.pending_recommendations;';
    END IF;
    SELECT r.id, r.status, r.decided_by, r.decided_at, r.decision_note INTO rec
    FROM arch.recommendation r WHERE r.id = approve.id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'arch.approve: recommendation % does not exist', approve.id
            USING ERRCODE = 'no_data_found',
                  HINT = 'SELECT id, table_name, ddl, confidence FROM arch.pending_recommendations;';
    END IF;
    IF rec.status <> 'proposed' THEN
        PERFORM arch._decision_error('arch.approve', rec.id, rec.status, rec.decided_by, rec.decided_at, rec.decision_note);
    END IF;
    UPDATE arch.recommendation r SET status = 'approved', decision_note = nullif(btrim(approve.note), '')
    WHERE r.id = approve.id;
    req := arch._queue_request('open_pr', jsonb_build_object('recommendation_id', approve.id), 'open_pr:' || approve.id);
    IF req IS NULL THEN
        SELECT q.id INTO req FROM arch.request q WHERE q.dedup_key = 'open_pr:' || approve.id;
    END IF;
    RAISE NOTICE 'recommendation % approved by %: its pull request is queued as request % (nothing is applied to this database)',
        approve.id, current_user, req;
    RETURN jsonb_build_object('recommendation', approve.id, 'status', 'approved', 'request', req);
END
$$;
COMMENT ON FUNCTION arch.approve(bigint, text) IS
'Approves a proposed recommendation (with an optional note) and queues its pull request for the sidecar; nothing is applied to the database. Returns {recommendation, status, request}.';

CREATE OR REPLACE FUNCTION arch.reject(id bigint, reason text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rec record;
BEGIN
    IF reject.id IS NULL THEN
        RAISE EXCEPTION 'arch.reject: the recommendation id must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'SELECT id, table_name, ddl, confidence FROM arch.pending_recommendations;';
    END IF;
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'arch.reject: a reason is required'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The reason is kept in the recommendation''s history and teaches later audits.',
                  HINT = format('SELECT arch.reject(%s, ''the table is rewritten nightly: an index would slow the import'');',
                                coalesce(reject.id::text, 'id'));
    END IF;
    SELECT r.id, r.status, r.decided_by, r.decided_at, r.decision_note INTO rec
    FROM arch.recommendation r WHERE r.id = reject.id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'arch.reject: recommendation % does not exist', reject.id
            USING ERRCODE = 'no_data_found',
                  HINT = 'SELECT id, table_name, ddl, confidence FROM arch.pending_recommendations;';
    END IF;
    IF rec.status NOT IN ('proposed', 'approved') THEN
        PERFORM arch._decision_error('arch.reject', rec.id, rec.status, rec.decided_by, rec.decided_at, rec.decision_note);
    END IF;
    IF rec.status = 'approved' AND EXISTS (SELECT 1 FROM arch.request q WHERE q.dedup_key = 'open_pr:' || reject.id
                                           AND q.status = 'running') THEN
        RAISE EXCEPTION 'arch.reject: the pull request of recommendation % is being opened right now', reject.id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Wait a moment and close the pull request on GitHub: closing it is the rejection.';
    END IF;
    UPDATE arch.recommendation r SET status = 'rejected', decision_note = btrim(reject.reason)
    WHERE r.id = reject.id;
    RETURN jsonb_build_object('recommendation', reject.id, 'status', 'rejected');
END
$$;
COMMENT ON FUNCTION arch.reject(bigint, text) IS
'Rejects a proposed (or approved, while its pull request is not open yet) recommendation; the reason is required and kept in its history.';

-- ---------------------------------------------------------------- queue helpers for DBAs

CREATE OR REPLACE FUNCTION arch.retry_request(id bigint) RETURNS jsonb
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st text;
BEGIN
    SELECT q.status INTO st FROM arch.request q WHERE q.id = retry_request.id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'arch.retry_request: request % does not exist', retry_request.id
            USING ERRCODE = 'no_data_found', HINT = 'SELECT * FROM arch.requests;';
    END IF;
    IF st NOT IN ('failed', 'refused') THEN
        RAISE EXCEPTION 'arch.retry_request: request % is %', retry_request.id, st
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Only failed or refused requests can be retried; pending and running ones are being worked on.';
    END IF;
    UPDATE arch.request q SET status = 'pending', attempts = 0, run_after = now(), last_error = NULL,
                              finished_at = NULL, claimed_by = NULL, claimed_at = NULL
    WHERE q.id = retry_request.id;
    RETURN jsonb_build_object('request', retry_request.id, 'status', 'pending');
END
$$;
COMMENT ON FUNCTION arch.retry_request(bigint) IS
'Puts a failed or refused sidecar request back in the queue with its attempts reset (after fixing a setting or the sidecar''s environment).';

CREATE OR REPLACE FUNCTION arch.ask(question text) RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    req bigint;
BEGIN
    IF question IS NULL OR btrim(question) = '' THEN
        RAISE EXCEPTION 'arch.ask: the question is empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'SELECT arch.ask(''which tables grew fastest this month?'');';
    END IF;
    IF length(question) > 4000 THEN
        RAISE EXCEPTION 'arch.ask: the question is too long (% characters, at most 4000)', length(question)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (SELECT s.llm_provider FROM arch.settings s WHERE s.id) IS NULL THEN
        RAISE EXCEPTION 'arch.ask: no LLM is configured'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'UPDATE arch.settings SET llm_provider = ''openai'', llm_model = ''...''; and give the sidecar its key in its environment.';
    END IF;
    req := arch._queue_request('ask', jsonb_build_object('question', btrim(question)));
    RAISE NOTICE 'question queued as request %: SELECT * FROM arch.answer(%);', req, req;
    RETURN req;
END
$$;
COMMENT ON FUNCTION arch.ask(text) IS
'Queues a question in plain words for the sidecar (Vanna generates SQL, which runs only if it is one read-only statement, as arch_reader, in a READ ONLY transaction); returns the request id for arch.answer().';

CREATE OR REPLACE FUNCTION arch.train() RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    req bigint;
BEGIN
    SELECT q.id INTO req FROM arch.request q
    WHERE q.kind = 'train' AND q.status IN ('pending', 'running') ORDER BY q.id LIMIT 1;
    IF req IS NULL THEN
        req := arch._queue_request('train');
    END IF;
    RETURN req;
END
$$;
COMMENT ON FUNCTION arch.train() IS
'Queues Vanna training for the sidecar (DDL of the user schemas, arch.documentation, approved recommendations as question/SQL pairs); returns the request id. Re-training adds no duplicates.';
