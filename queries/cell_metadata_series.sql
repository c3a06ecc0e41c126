-- name: cell_metadata_series
-- description: Time series per cell along a lineage: one row per position and key, for every position
--   metadata key (e.g. an OrganoidTracker 'intensity') and the position's own columns 'x', 'y', 'z',
--   'quality' and 'radius' (where stored). With track_id, the cell's whole history: that track and every track it
--   descends from, back to the root; with lineage_id, every track of that lineage; key picks one key.
--   value is the number (int, float, or bool as 1/0) and value_text the text of a str value.
-- params: session_id int (optional), tag_key str (optional), tag_value str (optional), track_id int (optional), lineage_id int (optional), key str (optional)
-- returns: session_id, lineage_id, track_id, position_id, frame, time, key, vtype, value, value_text
WITH RECURSIVE selected AS (
  -- the sessions asked for: one session_id and/or sessions with a tag (key, value or both)
  SELECT s.session_id
  FROM sessions AS s
  WHERE (CAST(:session_id AS INTEGER) IS NULL OR s.session_id = CAST(:session_id AS INTEGER))
    AND ((CAST(:tag_key AS VARCHAR) IS NULL AND CAST(:tag_value AS VARCHAR) IS NULL)
         OR EXISTS (SELECT 1 FROM session_tags AS g
                    WHERE g.session_id = s.session_id
                      AND (CAST(:tag_key AS VARCHAR) IS NULL OR g.key = CAST(:tag_key AS VARCHAR))
                      AND (CAST(:tag_value AS VARCHAR) IS NULL OR g.value = CAST(:tag_value AS VARCHAR))))
),
edges AS MATERIALIZED (
  SELECT DISTINCT tl.session_id, tl.parent_track_id, tl.child_track_id
  FROM tracklet_links AS tl
  JOIN selected AS sel ON sel.session_id = tl.session_id
),
history (session_id, track_id) AS (
  SELECT t.session_id, t.track_id
  FROM tracks AS t
  JOIN selected AS sel ON sel.session_id = t.session_id
  WHERE (CAST(:track_id AS INTEGER) IS NULL OR t.track_id = CAST(:track_id AS INTEGER))
    AND (CAST(:lineage_id AS INTEGER) IS NULL OR t.lineage_id = CAST(:lineage_id AS INTEGER))
  UNION
  SELECT h.session_id, tl.parent_track_id
  FROM history AS h
  JOIN edges AS tl ON tl.session_id = h.session_id AND tl.child_track_id = h.track_id
  WHERE CAST(:track_id AS INTEGER) IS NOT NULL
),
cells AS (
  SELECT p.session_id, p.track_id, p.position_id, p.frame, p.x, p.y, p.z, p.quality, p.radius
  FROM history AS h
  JOIN positions AS p ON p.session_id = h.session_id AND p.track_id = h.track_id
),
series AS (
  SELECT c.session_id, c.track_id, c.position_id, c.frame, m.key, m.vtype,
         COALESCE(m.v_float, CAST(m.v_int AS DOUBLE PRECISION),
                  CASE WHEN m.v_bool THEN 1.0 WHEN NOT m.v_bool THEN 0.0 END) AS value,
         m.v_str AS value_text
  FROM cells AS c
  JOIN metadata AS m ON m.session_id = c.session_id AND m.scope = 'position' AND m.owner_id = c.position_id
  UNION ALL
  SELECT c.session_id, c.track_id, c.position_id, c.frame, 'x', 'float', c.x, NULL
  FROM cells AS c
  WHERE c.x IS NOT NULL
  UNION ALL
  SELECT c.session_id, c.track_id, c.position_id, c.frame, 'y', 'float', c.y, NULL
  FROM cells AS c
  WHERE c.y IS NOT NULL
  UNION ALL
  SELECT c.session_id, c.track_id, c.position_id, c.frame, 'z', 'float', c.z, NULL
  FROM cells AS c
  WHERE c.z IS NOT NULL
  UNION ALL
  SELECT c.session_id, c.track_id, c.position_id, c.frame, 'quality', 'float', c.quality, NULL
  FROM cells AS c
  WHERE c.quality IS NOT NULL
  UNION ALL
  SELECT c.session_id, c.track_id, c.position_id, c.frame, 'radius', 'float', c.radius, NULL
  FROM cells AS c
  WHERE c.radius IS NOT NULL
)
SELECT sr.session_id, t.lineage_id, sr.track_id, sr.position_id, sr.frame, f.time, sr.key, sr.vtype,
       sr.value, sr.value_text
FROM series AS sr
JOIN tracks AS t ON t.session_id = sr.session_id AND t.track_id = sr.track_id
LEFT JOIN frames AS f ON f.session_id = sr.session_id AND f.frame = sr.frame
WHERE CAST(:key AS VARCHAR) IS NULL OR sr.key = CAST(:key AS VARCHAR)
ORDER BY sr.session_id, sr.key, sr.frame, sr.track_id, sr.position_id
