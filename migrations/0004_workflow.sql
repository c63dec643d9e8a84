-- pg_architect migration 0004: human approval, the sidecar's work queue, pull requests, Vanna.
-- Run once, in a transaction, by `pg-architect install`; never edit after release.

-- Settings of the workflow and the sidecar (the sidecar's own config holds only how to connect).
ALTER TABLE arch.settings
    ADD COLUMN approval_policy          text             NOT NULL DEFAULT 'on_approval',
    ADD COLUMN github_api_url           text             NOT NULL DEFAULT 'https://api.github.com',
    ADD COLUMN github_repo              text,
    ADD COLUMN github_base_branch       text             NOT NULL DEFAULT 'main',
    ADD COLUMN migrations_dir           text             NOT NULL DEFAULT 'migrations',
    ADD COLUMN migration_format         text             NOT NULL DEFAULT 'sql',
    ADD COLUMN github_timeout_s         integer          NOT NULL DEFAULT 30,
    ADD COLUMN github_max_wait_s        double precision NOT NULL DEFAULT 60,
    ADD COLUMN sidecar_poll_s           double precision NOT NULL DEFAULT 10,
    ADD COLUMN sidecar_lease_s          double precision NOT NULL DEFAULT 300,
    ADD COLUMN request_max_attempts     integer          NOT NULL DEFAULT 5,
    ADD COLUMN request_retry_base_s     double precision NOT NULL DEFAULT 30,
    ADD COLUMN pr_sync_interval_s       double precision NOT NULL DEFAULT 300,
    ADD COLUMN llm_provider             text,
    ADD COLUMN llm_base_url             text,
    ADD COLUMN llm_model                text,
    ADD COLUMN llm_timeout_s            double precision NOT NULL DEFAULT 60,
    ADD COLUMN ask_row_cap              integer          NOT NULL DEFAULT 100,
    ADD COLUMN ask_statement_timeout_ms integer          NOT NULL DEFAULT 5000,
    ADD CONSTRAINT settings_approval_policy CHECK (approval_policy IN ('on_approval', 'auto_above_threshold')),
    ADD CONSTRAINT settings_github_api_url CHECK (github_api_url ~ '^https?://'),
    ADD CONSTRAINT settings_github_repo CHECK (github_repo IS NULL OR github_repo ~ '^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$'),
    ADD CONSTRAINT settings_github_base_branch CHECK (github_base_branch ~ '^[A-Za-z0-9._/-]+$' AND github_base_branch !~ '\.\.'),
    ADD CONSTRAINT settings_migrations_dir CHECK (migrations_dir ~ '^[A-Za-z0-9._/-]*$' AND migrations_dir !~ '(^|/)\.\.(/|$)' AND migrations_dir !~ '^/'),
    ADD CONSTRAINT settings_migration_format CHECK (migration_format IN ('sql', 'prisma', 'flyway')),
    ADD CONSTRAINT settings_github_timeout_s CHECK (github_timeout_s BETWEEN 1 AND 600),
    ADD CONSTRAINT settings_github_max_wait_s CHECK (github_max_wait_s BETWEEN 0 AND 3600),
    ADD CONSTRAINT settings_sidecar_poll_s CHECK (sidecar_poll_s > 0 AND sidecar_poll_s <= 3600),
    ADD CONSTRAINT settings_sidecar_lease_s CHECK (sidecar_lease_s >= 5),
    ADD CONSTRAINT settings_request_max_attempts CHECK (request_max_attempts BETWEEN 1 AND 100),
    ADD CONSTRAINT settings_request_retry_base_s CHECK (request_retry_base_s >= 0 AND request_retry_base_s <= 86400),
    ADD CONSTRAINT settings_pr_sync_interval_s CHECK (pr_sync_interval_s >= 0),
    ADD CONSTRAINT settings_llm_provider CHECK (llm_provider IS NULL OR llm_provider IN ('openai', 'ollama', 'gemini')),
    ADD CONSTRAINT settings_llm_base_url CHECK (llm_base_url IS NULL OR llm_base_url ~ '^https?://'),
    ADD CONSTRAINT settings_llm_timeout_s CHECK (llm_timeout_s > 0 AND llm_timeout_s <= 3600),
    ADD CONSTRAINT settings_ask_row_cap CHECK (ask_row_cap BETWEEN 1 AND 10000),
    ADD CONSTRAINT settings_ask_statement_timeout_ms CHECK (ask_statement_timeout_ms BETWEEN 10 AND 600000);

-- The human decision on a recommendation (the full story is in arch.recommendation_transition).
ALTER TABLE arch.recommendation
    ADD COLUMN decided_at    timestamptz,
    ADD COLUMN decided_by    name,
    ADD COLUMN decision_note text,
    ADD COLUMN superseded_by bigint REFERENCES arch.recommendation (id) ON DELETE SET NULL;

-- Every status change of every recommendation: who, when, from what to what, and why.
CREATE TABLE arch.recommendation_transition (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recommendation_id bigint      NOT NULL REFERENCES arch.recommendation (id) ON DELETE CASCADE,
    from_status       text,
    to_status         text        NOT NULL,
    changed_by        name        NOT NULL DEFAULT current_user,
    changed_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    note              text
);
CREATE INDEX recommendation_transition_rec_idx ON arch.recommendation_transition (recommendation_id, id);

-- One row per sidecar process that ever started: its heartbeat and counters.
CREATE TABLE arch.sidecar (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text        NOT NULL,
    host          text        NOT NULL,
    pid           integer     NOT NULL,
    backend_pid   integer     NOT NULL,
    version       text        NOT NULL,
    login_role    name        NOT NULL DEFAULT current_user,
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    heartbeat_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    stopped_at    timestamptz,
    processed     bigint      NOT NULL DEFAULT 0,
    failed        bigint      NOT NULL DEFAULT 0,
    last_error    text
);

-- The sidecar's work queue: what the database cannot do itself (network, LLM).
CREATE TABLE arch.request (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text        NOT NULL,
    payload      jsonb       NOT NULL DEFAULT '{}',
    status       text        NOT NULL DEFAULT 'pending',
    dedup_key    text,
    attempts     integer     NOT NULL DEFAULT 0,
    run_after    timestamptz NOT NULL DEFAULT now(),
    last_error   text,
    claimed_by   bigint REFERENCES arch.sidecar (id) ON DELETE SET NULL,
    claimed_at   timestamptz,
    result       jsonb,
    requested_by name        NOT NULL DEFAULT current_user,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    CONSTRAINT request_kind CHECK (kind IN ('open_pr', 'explain', 'ask', 'train')),
    CONSTRAINT request_status CHECK (status IN ('pending', 'running', 'done', 'failed', 'refused')),
    CONSTRAINT request_dedup_key_unique UNIQUE (dedup_key),
    CONSTRAINT request_payload_object CHECK (jsonb_typeof(payload) = 'object')
);
CREATE INDEX request_queue_idx ON arch.request (run_after, id) WHERE status IN ('pending', 'running');

-- The pull request of a recommendation: branch, files, number, state (synced back from GitHub).
CREATE TABLE arch.pull_request (
    recommendation_id bigint PRIMARY KEY REFERENCES arch.recommendation (id) ON DELETE CASCADE,
    repo              text        NOT NULL,
    base_branch       text        NOT NULL,
    branch            text        NOT NULL,
    migration_format  text        NOT NULL,
    files             jsonb       NOT NULL DEFAULT '[]',
    pr_number         integer,
    url               text,
    state             text        NOT NULL DEFAULT 'creating',
    head_sha          text,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    merged_at         timestamptz,
    closed_at         timestamptz,
    synced_at         timestamptz,
    CONSTRAINT pull_request_state CHECK (state IN ('creating', 'open', 'merged', 'closed'))
);

-- What a statement does for the business, in plain words (Vanna, through the sidecar).
CREATE TABLE arch.statement_explanation (
    dbid        oid         NOT NULL,
    userid      oid         NOT NULL,
    queryid     bigint      NOT NULL,
    explanation text        NOT NULL,
    provider    text,
    model       text,
    request_id  bigint REFERENCES arch.request (id) ON DELETE SET NULL,
    explained_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (dbid, userid, queryid)
);

-- Documentation a DBA writes for Vanna (what the tables mean, business vocabulary).
CREATE TABLE arch.documentation (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title      text        NOT NULL,
    body       text        NOT NULL,
    created_by name        NOT NULL DEFAULT current_user,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT documentation_body_not_empty CHECK (btrim(body) <> '')
);

-- Vanna's training data: DDL, documentation and question/SQL pairs with their embeddings.
CREATE TABLE arch.vanna_training (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       text        NOT NULL,
    source     text        NOT NULL,
    question   text,
    content    text        NOT NULL,
    embedding  vector(384) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT vanna_training_kind CHECK (kind IN ('ddl', 'documentation', 'sql')),
    CONSTRAINT vanna_training_source_unique UNIQUE (source),
    CONSTRAINT vanna_training_sql_has_question CHECK (kind <> 'sql' OR question IS NOT NULL)
);
CREATE INDEX vanna_training_kind_idx ON arch.vanna_training (kind);
