-- One step per link whose two ends are in the same track, with its geometry: the base of every kinematic query.
-- depends: links, positions
--
-- frame/time are the source's; frame_gap > 1 for a step across a gap (speed is then the mean speed
-- over the gap). step_length = sqrt(dx^2 + dy^2 + dz^2) (dz counts as 0 in 2D), in the session's
-- space_unit. speed = step_length / time_gap in space_unit per time_unit (NULL when the session has
-- no frame times or the time gap is 0); speed_per_frame = step_length / frame_gap, always defined.
-- Links between tracks (divisions, merges) are not steps of any track and are left out.
-- Kinematic queries aggregate these columns instead of running window functions (DESIGN.md).
CREATE OR REPLACE VIEW track_steps AS
SELECT l.session_id, s.track_id, l.link_id, l.source_id, l.target_id,
       s.frame, l.frame_gap, l.time_gap, l.dx, l.dy, l.dz,
       sqrt(l.dx * l.dx + l.dy * l.dy + COALESCE(l.dz * l.dz, 0)) AS step_length,
       sqrt(l.dx * l.dx + l.dy * l.dy + COALESCE(l.dz * l.dz, 0)) / NULLIF(l.time_gap, 0) AS speed,
       sqrt(l.dx * l.dx + l.dy * l.dy + COALESCE(l.dz * l.dz, 0)) / l.frame_gap AS speed_per_frame
FROM links AS l
JOIN positions AS s
  ON s.session_id = l.session_id AND s.position_id = l.source_id
JOIN positions AS t
  ON t.session_id = l.session_id AND t.position_id = l.target_id
WHERE s.track_id = t.track_id
