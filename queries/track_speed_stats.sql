-- name: track_speed_stats
-- description: Speed and acceleration statistics of every track, from its steps (links inside the track, see
--   the track_steps and track_accelerations views): number of steps, mean, median and maximum speed
--   (step length / time gap; a step across a gap counts once, with its mean speed), and the mean
--   magnitude of the acceleration. Stored units: space_unit per time_unit (and per time_unit squared);
--   speeds are NULL when the session has no frame times. Tracks without steps have n_steps 0 and NULLs.
-- params: session_id int (optional), tag_key str (optional), tag_value str (optional)
-- returns: session_id, track_id, name, n_steps, mean_speed, median_speed, max_speed, mean_abs_acceleration,
--   space_unit, time_unit
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
speeds AS (
  SELECT st.session_id, st.track_id, count(*) AS n_steps,
         avg(st.speed) AS mean_speed,
         percentile_cont(0.5) WITHIN GROUP (ORDER BY st.speed) AS median_speed,
         max(st.speed) AS max_speed
  FROM track_steps AS st
  JOIN selected AS sel ON sel.session_id = st.session_id
  GROUP BY st.session_id, st.track_id
),
accelerations AS (
  SELECT a.session_id, a.track_id, avg(a.acceleration) AS mean_abs_acceleration
  FROM track_accelerations AS a
  JOIN selected AS sel ON sel.session_id = a.session_id
  GROUP BY a.session_id, a.track_id
)
SELECT t.session_id, t.track_id, t.name, COALESCE(sp.n_steps, 0) AS n_steps,
       sp.mean_speed, sp.median_speed, sp.max_speed, ac.mean_abs_acceleration,
       se.space_unit, se.time_unit
FROM tracks AS t
JOIN selected AS sel ON sel.session_id = t.session_id
JOIN sessions AS se ON se.session_id = t.session_id
LEFT JOIN speeds AS sp ON sp.session_id = t.session_id AND sp.track_id = t.track_id
LEFT JOIN accelerations AS ac ON ac.session_id = t.session_id AND ac.track_id = t.track_id
ORDER BY t.session_id, t.track_id
