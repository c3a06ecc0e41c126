-- name: cell_cycle_durations
-- description: Every track as a cell: how it was born (root, division, merge, continuation), how it ends
--   (divides, merges, continues, ends) and, for a complete cycle (born by a division and dividing), its
--   length: cycle_frames from its birth to its daughters' birth, and cycle_time the same in the
--   session's time_unit (from frame times, so variable intervals count). complete_only keeps complete
--   cycles only; lineage_id picks one lineage.
-- params: session_id int (optional), tag_key str (optional), tag_value str (optional), lineage_id int (optional), complete_only bool (optional)
-- returns: session_id, lineage_id, track_id, generation, birth, fate, birth_frame, end_frame, complete, cycle_frames, cycle_time, time_unit
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
)
SELECT s.session_id, s.lineage_id, s.track_id, s.generation, s.start_kind AS birth, s.fate,
       s.first_frame AS birth_frame, s.last_frame AS end_frame, s.cycle_frames IS NOT NULL AS complete,
       s.cycle_frames, s.cycle_time, se.time_unit
FROM tracklet_summary AS s
JOIN selected AS sel ON sel.session_id = s.session_id
JOIN sessions AS se ON se.session_id = s.session_id
WHERE (CAST(:lineage_id AS INTEGER) IS NULL OR s.lineage_id = CAST(:lineage_id AS INTEGER))
  AND (NOT COALESCE(CAST(:complete_only AS BOOLEAN), FALSE) OR s.cycle_frames IS NOT NULL)
ORDER BY s.session_id, s.lineage_id, s.generation, s.first_frame, s.track_id
