-- name: session_coverage
-- description: How much of each session is located: located (track, frame) cells out of frames x tracks (the
--   grid of trajectories_with_gaps; located = origin not gap_closed), and the frames in which every track
--   is located. Fractions are NULL for a session without frames or tracks.
-- params: session_id int (optional), tag_key str (optional), tag_value str (optional)
-- returns: session_id, name, n_frames, n_tracks, n_located, fraction_located, n_frames_all_located,
--   fraction_frames_all_located
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
n_frames AS (
  SELECT f.session_id, count(*) AS n_frames
  FROM frames AS f
  JOIN selected AS sel ON sel.session_id = f.session_id
  GROUP BY f.session_id
),
n_tracks AS (
  SELECT t.session_id, count(*) AS n_tracks
  FROM tracks AS t
  JOIN selected AS sel ON sel.session_id = t.session_id
  GROUP BY t.session_id
),
cells AS (
  SELECT DISTINCT p.session_id, p.track_id, p.frame
  FROM positions AS p
  JOIN selected AS sel ON sel.session_id = p.session_id
  WHERE p.origin <> 'gap_closed' AND p.track_id IS NOT NULL
),
per_frame AS (
  SELECT c.session_id, c.frame, count(*) AS n_located
  FROM cells AS c
  GROUP BY c.session_id, c.frame
),
per_session AS (
  SELECT pf.session_id, sum(pf.n_located) AS n_located,
         count(CASE WHEN pf.n_located = nt.n_tracks THEN 1 END) AS n_frames_all_located
  FROM per_frame AS pf
  JOIN n_tracks AS nt ON nt.session_id = pf.session_id
  GROUP BY pf.session_id
)
SELECT s.session_id, s.name,
       COALESCE(nf.n_frames, 0) AS n_frames,
       COALESCE(nt.n_tracks, 0) AS n_tracks,
       COALESCE(ps.n_located, 0) AS n_located,
       CAST(COALESCE(ps.n_located, 0) AS DOUBLE PRECISION) / NULLIF(nf.n_frames * nt.n_tracks, 0) AS fraction_located,
       COALESCE(ps.n_frames_all_located, 0) AS n_frames_all_located,
       CAST(COALESCE(ps.n_frames_all_located, 0) AS DOUBLE PRECISION) / NULLIF(CASE WHEN nt.n_tracks > 0 THEN nf.n_frames END, 0)
         AS fraction_frames_all_located
FROM sessions AS s
JOIN selected AS sel ON sel.session_id = s.session_id
LEFT JOIN n_frames AS nf ON nf.session_id = s.session_id
LEFT JOIN n_tracks AS nt ON nt.session_id = s.session_id
LEFT JOIN per_session AS ps ON ps.session_id = s.session_id
ORDER BY s.session_id
