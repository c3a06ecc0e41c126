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
steps AS (
  -- the steps, read once for both the speeds and the accelerations below (DuckDB and PostgreSQL
  -- materialize a CTE used twice): faster on 10 M steps than the track_accelerations view
  SELECT st.session_id, st.track_id, st.source_id, st.target_id, st.time_gap, st.dx, st.dy, st.dz, st.speed
  FROM track_steps AS st
  JOIN selected AS sel ON sel.session_id = st.session_id
),
speeds AS (
  SELECT st.session_id, st.track_id, count(*) AS n_steps,
         avg(st.speed) AS mean_speed,
         percentile_cont(0.5) WITHIN GROUP (ORDER BY st.speed) AS median_speed,
         max(st.speed) AS max_speed
  FROM steps AS st
  GROUP BY st.session_id, st.track_id
),
accelerations AS (
  -- the acceleration of the track_accelerations view: |v_out - v_in| / mean of the two time gaps
  SELECT a.session_id, a.track_id,
         avg(sqrt(
               power(b.dx / NULLIF(b.time_gap, 0) - a.dx / NULLIF(a.time_gap, 0), 2)
               + power(b.dy / NULLIF(b.time_gap, 0) - a.dy / NULLIF(a.time_gap, 0), 2)
               + COALESCE(power(b.dz / NULLIF(b.time_gap, 0) - a.dz / NULLIF(a.time_gap, 0), 2), 0)
             ) / NULLIF((a.time_gap + b.time_gap) / 2, 0)) AS mean_abs_acceleration
  FROM steps AS a
  JOIN steps AS b
    ON b.session_id = a.session_id AND b.source_id = a.target_id AND b.track_id = a.track_id
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
