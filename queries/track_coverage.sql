-- name: track_coverage
-- description: Fraction of frames in which each track is located (a position whose origin is not gap_closed,
--   as in trajectories_with_gaps): over all the session's frames (fraction_located), and over the frames
--   from its first to its last located frame (fraction_of_span; NULL for a track never located).
-- params: session_id int (optional), tag_key str (optional), tag_value str (optional)
-- returns: session_id, track_id, name, n_frames, n_located, fraction_located, first_frame, last_frame,
--   n_frames_spanned, fraction_of_span
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
located AS (
  SELECT p.session_id, p.track_id, count(DISTINCT p.frame) AS n_located,
         min(p.frame) AS first_frame, max(p.frame) AS last_frame
  FROM positions AS p
  JOIN selected AS sel ON sel.session_id = p.session_id
  WHERE p.origin <> 'gap_closed' AND p.track_id IS NOT NULL
  GROUP BY p.session_id, p.track_id
),
spans AS (
  SELECT lo.session_id, lo.track_id, count(*) AS n_frames_spanned
  FROM located AS lo
  JOIN frames AS f
    ON f.session_id = lo.session_id AND f.frame >= lo.first_frame AND f.frame <= lo.last_frame
  GROUP BY lo.session_id, lo.track_id
)
SELECT t.session_id, t.track_id, t.name,
       COALESCE(nf.n_frames, 0) AS n_frames,
       COALESCE(lo.n_located, 0) AS n_located,
       CAST(COALESCE(lo.n_located, 0) AS DOUBLE PRECISION) / NULLIF(nf.n_frames, 0) AS fraction_located,
       lo.first_frame, lo.last_frame, sp.n_frames_spanned,
       CAST(lo.n_located AS DOUBLE PRECISION) / NULLIF(sp.n_frames_spanned, 0) AS fraction_of_span
FROM tracks AS t
JOIN selected AS sel ON sel.session_id = t.session_id
LEFT JOIN n_frames AS nf ON nf.session_id = t.session_id
LEFT JOIN located AS lo ON lo.session_id = t.session_id AND lo.track_id = t.track_id
LEFT JOIN spans AS sp ON sp.session_id = t.session_id AND sp.track_id = t.track_id
ORDER BY t.session_id, t.track_id
