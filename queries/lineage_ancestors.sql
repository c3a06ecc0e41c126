-- name: lineage_ancestors
-- description: Every track a track descends from, back to its lineage's root(s) (recursive over the links
--   between tracks), with the distance in tracks (0 = the track itself; both parents of a merge are
--   followed). Without track_id, the ancestors of every track.
-- params: session_id int (optional), tag_key str (optional), tag_value str (optional), track_id int (optional)
-- returns: session_id, of_track_id, track_id, distance, generation, first_frame, last_frame, fate
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
summary AS MATERIALIZED (
  SELECT ts.session_id, ts.track_id, ts.n_parents, ts.generation, ts.first_frame, ts.last_frame, ts.fate
  FROM tracklet_summary AS ts
  JOIN selected AS sel ON sel.session_id = ts.session_id
),
start AS (
  SELECT s.session_id, s.track_id
  FROM summary AS s
  WHERE CAST(:track_id AS INTEGER) IS NULL OR s.track_id = CAST(:track_id AS INTEGER)
),
edges AS MATERIALIZED (
  SELECT DISTINCT tl.session_id, tl.parent_track_id, tl.child_track_id
  FROM tracklet_links AS tl
  JOIN selected AS sel ON sel.session_id = tl.session_id
),
walk (session_id, of_track_id, track_id, distance) AS (
  SELECT st.session_id, st.track_id, st.track_id, CAST(0 AS INTEGER)
  FROM start AS st
  UNION
  SELECT w.session_id, w.of_track_id, tl.parent_track_id, w.distance + 1
  FROM walk AS w
  JOIN edges AS tl ON tl.session_id = w.session_id AND tl.child_track_id = w.track_id
)
SELECT w.session_id, w.of_track_id, w.track_id, min(w.distance) AS distance, s.generation,
       s.first_frame, s.last_frame, s.fate
FROM walk AS w
JOIN summary AS s ON s.session_id = w.session_id AND s.track_id = w.track_id
GROUP BY w.session_id, w.of_track_id, w.track_id, s.generation, s.first_frame, s.last_frame, s.fate
ORDER BY w.session_id, w.of_track_id, min(w.distance), w.track_id
