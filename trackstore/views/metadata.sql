-- Every metadata value, one row each: session_id, scope, owner_id, key, seq, vtype, v_int, v_float, v_bool, v_str, v_json.
-- depends: metadata_blocks, metadata_values
--
-- The values are stored without their key (metadata_values) and the keys once per session
-- (metadata_blocks, migration 0006); this view is the shape every query reads. vtype is the
-- block's when all its values share one type, else the value's own.
CREATE OR REPLACE VIEW metadata AS
SELECT v.session_id, b.scope, v.owner_id, b.key, v.seq, COALESCE(v.vtype, b.vtype) AS vtype,
       v.v_int, v.v_float, v.v_bool, v.v_str, v.v_json
FROM metadata_values AS v
JOIN metadata_blocks AS b ON b.session_id = v.session_id AND b.seq = v.seq
