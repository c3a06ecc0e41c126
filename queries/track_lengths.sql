-- name: track_lengths
-- description: Size and time span of every track: positions (all, and located = not gap_closed), first and
--   last frame, and duration (time of the last minus time of the first frame, in the session's time_unit).
--   Tracks without positions have n_positions 0. Filter by session_id and/or a session tag (tag_key, tag_value).
-- params: session_id int (optional), tag_key str (optional), tag_value str (optional)
-- returns: session_id, track_id, name, identity, n_positions, n_located, first_frame, last_frame, duration
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
  SELECT t.session_id, t.track_id, t.name, t.identity,
         count(p.position_id) AS n_positions,
         count(CASE WHEN p.origin <> 'gap_closed' THEN 1 END) AS n_located,
         min(p.frame) AS first_frame,
         max(p.frame) AS last_frame
  FROM tracks AS t
  JOIN selected AS sel ON sel.session_id = t.session_id
  LEFT JOIN positions AS p ON p.session_id = t.session_id AND p.track_id = t.track_id
  GROUP BY t.session_id, t.track_id, t.name, t.identity
)
SELECT pt.session_id, pt.track_id, pt.name, pt.identity, pt.n_positions, pt.n_located,
       pt.first_frame, pt.last_frame, f1.time - f0.time AS duration
FROM per_track AS pt
LEFT JOIN frames AS f0 ON f0.session_id = pt.session_id AND f0.frame = pt.first_frame
LEFT JOIN frames AS f1 ON f1.session_id = pt.session_id AND f1.frame = pt.last_frame
ORDER BY pt.session_id, pt.track_id
