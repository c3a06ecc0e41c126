-- name: nearest_neighbour_distances
-- description: Per session and frame, the distance from each located position (origin not gap_closed; lone
--   positions included) to its nearest other located position in that frame, summarised as mean and
--   minimum. Only frames with at least two located positions appear. Distances are 3D where z is stored,
--   in the session's space_unit.
-- params: session_id int (optional), tag_key str (optional), tag_value str (optional)
-- returns: session_id, frame, n_located, mean_nn_distance, min_nn_distance, space_unit
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
located AS (
  SELECT p.session_id, p.frame, p.position_id, p.x, p.y, p.z
  FROM positions AS p
  JOIN selected AS sel ON sel.session_id = p.session_id
  WHERE p.origin <> 'gap_closed' AND p.x IS NOT NULL AND p.y IS NOT NULL
),
nearest AS (
  SELECT a.session_id, a.frame, a.position_id,
         sqrt(min((b.x - a.x) * (b.x - a.x) + (b.y - a.y) * (b.y - a.y)
                  + COALESCE((b.z - a.z) * (b.z - a.z), 0))) AS nn_distance
  FROM located AS a
  JOIN located AS b
    ON b.session_id = a.session_id AND b.frame = a.frame AND b.position_id <> a.position_id
  GROUP BY a.session_id, a.frame, a.position_id
)
SELECT n.session_id, n.frame, count(*) AS n_located,
       avg(n.nn_distance) AS mean_nn_distance, min(n.nn_distance) AS min_nn_distance, se.space_unit
FROM nearest AS n
JOIN sessions AS se ON se.session_id = n.session_id
GROUP BY n.session_id, n.frame, se.space_unit
ORDER BY n.session_id, n.frame
