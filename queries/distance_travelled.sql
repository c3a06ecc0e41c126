-- name: distance_travelled
-- description: Path length of every track: the sum of its step lengths (links inside the track; a step across
--   a gap counts as the straight line over it), in the session's space_unit as stored. Tracks without
--   steps have distance 0.
-- params: session_id int (optional), tag_key str (optional), tag_value str (optional)
-- returns: session_id, track_id, name, n_steps, distance, space_unit
WITH selected AS (
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
per_track AS (
  SELECT st.session_id, st.track_id, count(*) AS n_steps, sum(st.step_length) AS distance
  FROM track_steps AS st
  JOIN selected AS sel ON sel.session_id = st.session_id
  GROUP BY st.session_id, st.track_id
)
SELECT t.session_id, t.track_id, t.name, COALESCE(pt.n_steps, 0) AS n_steps,
       COALESCE(pt.distance, 0) AS distance, se.space_unit
FROM tracks AS t
JOIN selected AS sel ON sel.session_id = t.session_id
JOIN sessions AS se ON se.session_id = t.session_id
LEFT JOIN per_track AS pt ON pt.session_id = t.session_id AND pt.track_id = t.track_id
ORDER BY t.session_id, t.track_id
