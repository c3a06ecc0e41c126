-- The user tags of each session (`ingest --tag key=value`), one row per tag: session_id, key, value.
-- depends: metadata
CREATE OR REPLACE VIEW session_tags AS
SELECT m.session_id, m.key, m.v_str AS value
FROM metadata AS m
WHERE m.scope = 'tag'
