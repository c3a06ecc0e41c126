-- One row per pair of sister tracks (two daughters of the same division, track_a < track_b).
-- depends: tracklet_links, tracklet_summary
--
-- With each sister's first frame, length, fate and complete cell cycle (NULL unless she divides),
-- for sister-sister comparisons such as cell-cycle correlation.
CREATE OR REPLACE VIEW sister_pairs AS
WITH summary AS (
  SELECT ts.session_id, ts.track_id, ts.first_frame, ts.n_positions, ts.n_children, ts.fate, ts.cycle_frames,
         ts.cycle_time
  FROM tracklet_summary AS ts
),
daughters AS (
  SELECT DISTINCT tl.session_id, tl.parent_track_id, tl.child_track_id, tl.parent_frame
  FROM tracklet_links AS tl
  JOIN summary AS m
    ON m.session_id = tl.session_id AND m.track_id = tl.parent_track_id AND m.n_children >= 2
)
SELECT a.session_id, a.parent_track_id, a.parent_frame AS division_frame,
       a.child_track_id AS track_a, b.child_track_id AS track_b,
       sa.first_frame AS first_frame_a, sb.first_frame AS first_frame_b,
       sa.n_positions AS n_positions_a, sb.n_positions AS n_positions_b,
       sa.fate AS fate_a, sb.fate AS fate_b,
       sa.cycle_frames AS cycle_frames_a, sb.cycle_frames AS cycle_frames_b,
       sa.cycle_time AS cycle_time_a, sb.cycle_time AS cycle_time_b
FROM daughters AS a
JOIN daughters AS b
  ON b.session_id = a.session_id AND b.parent_track_id = a.parent_track_id AND a.child_track_id < b.child_track_id
JOIN summary AS sa ON sa.session_id = a.session_id AND sa.track_id = a.child_track_id
JOIN summary AS sb ON sb.session_id = b.session_id AND sb.track_id = b.child_track_id
