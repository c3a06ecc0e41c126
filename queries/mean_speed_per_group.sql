-- name: mean_speed_per_group
-- description: Mean speed per animal, summarised per group across sessions. An animal is a track; its speed is
--   the mean of its step speeds (as in track_speed_stats); its group is its track metadata value under
--   group_key (default 'group'; a str, or an int shown as text). For each group: the number of sessions and
--   of animals with a speed, and the mean, sample standard deviation, minimum and maximum of the animals'
--   mean speeds. Tracks without a group value form the group NULL (listed last). Speeds are in each
--   session's stored units: compare sessions with the same space_unit and time_unit.
-- params: session_id int (optional), tag_key str (optional), tag_value str (optional), group_key str (optional)
-- returns: group_name, n_sessions, n_animals, mean_speed, sd_speed, min_speed, max_speed
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
groups AS (
  SELECT m.session_id, m.owner_id AS track_id, COALESCE(m.v_str, CAST(m.v_int AS VARCHAR)) AS group_name
  FROM metadata AS m
  JOIN selected AS sel ON sel.session_id = m.session_id
  WHERE m.scope = 'track' AND m.key = COALESCE(CAST(:group_key AS VARCHAR), 'group')
),
animals AS (
  SELECT st.session_id, st.track_id, avg(st.speed) AS mean_speed
  FROM track_steps AS st
  JOIN selected AS sel ON sel.session_id = st.session_id
  GROUP BY st.session_id, st.track_id
)
SELECT g.group_name,
       count(DISTINCT a.session_id) AS n_sessions,
       count(a.mean_speed) AS n_animals,
       avg(a.mean_speed) AS mean_speed,
       stddev_samp(a.mean_speed) AS sd_speed,
       min(a.mean_speed) AS min_speed,
       max(a.mean_speed) AS max_speed
FROM animals AS a
LEFT JOIN groups AS g ON g.session_id = a.session_id AND g.track_id = a.track_id
GROUP BY g.group_name
ORDER BY g.group_name NULLS LAST
