-- name: group_polarization
-- description: Per session and frame, the polarization of the group: the length of the mean of the tracks'
--   unit heading vectors (1 = all move the same way, about 0 = no common direction). The heading of a
--   track at frame f is the direction of its step from f to f + 1 (track_steps with frame_gap 1; steps
--   across gaps and steps of length 0 give no heading; 3D where dz is stored). Only frames with at least
--   min_tracks headings appear (default 2).
-- params: session_id int (optional), tag_key str (optional), tag_value str (optional), min_tracks int (optional)
-- returns: session_id, frame, n_tracks, polarization
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
headings AS (
  SELECT st.session_id, st.frame,
         st.dx / st.step_length AS ux,
         st.dy / st.step_length AS uy,
         COALESCE(st.dz, 0) / st.step_length AS uz
  FROM track_steps AS st
  JOIN selected AS sel ON sel.session_id = st.session_id
  WHERE st.frame_gap = 1 AND st.step_length > 0
)
SELECT h.session_id, h.frame, count(*) AS n_tracks,
       sqrt(avg(h.ux) * avg(h.ux) + avg(h.uy) * avg(h.uy) + avg(h.uz) * avg(h.uz)) AS polarization
FROM headings AS h
GROUP BY h.session_id, h.frame
HAVING count(*) >= COALESCE(CAST(:min_tracks AS INTEGER), 2)
ORDER BY h.session_id, h.frame
