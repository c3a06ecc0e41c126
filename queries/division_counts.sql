-- name: division_counts
-- description: Divisions per time window: the frames are cut into windows of window frames (default 10)
--   counted from frame 0 (negative frames fall in negative windows). For each window with tracks: the
--   divisions (mothers whose last frame is in it), the tracks present, and divisions per track.
-- params: session_id int (optional), tag_key str (optional), tag_value str (optional), window int (optional)
-- returns: session_id, window_start, window_end, start_time, n_divisions, n_tracks, divisions_per_track
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
w AS (
  SELECT GREATEST(COALESCE(CAST(:window AS INTEGER), 10), 1) AS size
),
present AS (
  SELECT p.session_id, CAST(floor(CAST(p.frame AS DOUBLE PRECISION) / w.size) AS BIGINT) AS k,
         count(DISTINCT p.track_id) AS n_tracks, min(p.frame) AS first_frame
  FROM positions AS p
  JOIN selected AS sel ON sel.session_id = p.session_id
  CROSS JOIN w
  WHERE p.track_id IS NOT NULL
  GROUP BY p.session_id, CAST(floor(CAST(p.frame AS DOUBLE PRECISION) / w.size) AS BIGINT)
),
divs AS (
  SELECT d.session_id, CAST(floor(CAST(d.frame AS DOUBLE PRECISION) / w.size) AS BIGINT) AS k, count(*) AS n
  FROM division_events AS d
  JOIN selected AS sel ON sel.session_id = d.session_id
  CROSS JOIN w
  GROUP BY d.session_id, CAST(floor(CAST(d.frame AS DOUBLE PRECISION) / w.size) AS BIGINT)
)
SELECT pr.session_id, pr.k * w.size AS window_start, pr.k * w.size + w.size - 1 AS window_end,
       f.time AS start_time, COALESCE(dv.n, 0) AS n_divisions, pr.n_tracks,
       CAST(COALESCE(dv.n, 0) AS DOUBLE PRECISION) / pr.n_tracks AS divisions_per_track
FROM present AS pr
CROSS JOIN w
LEFT JOIN divs AS dv ON dv.session_id = pr.session_id AND dv.k = pr.k
LEFT JOIN frames AS f ON f.session_id = pr.session_id AND f.frame = pr.first_frame
ORDER BY pr.session_id, pr.k
